"""Analysis of built models: FLOP counting, effective receptive fields, the scan's implicit
attention. Each module needs torch alone (mm packages only where a tool builds from a config)."""
