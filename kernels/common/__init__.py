"""What the operation folders share, defined once: building the C++/CUDA extensions
(``lazy_extension``, ``cpu_extension``, ``cuda_extension``), SS2D's route geometry (``routes``),
the scans' input contract, prologue and epilogue (``scan_common``), the chunked tensor-op
recurrence (``chunked_recurrence``), what the scan operators share (``scan_operators``), the
Triton helpers (``triton_common``), the composite scan cores (``composite``) and the example-input
registry (``cases``). Not an operation: the discovery in ``vmamba_kernels`` skips it."""
