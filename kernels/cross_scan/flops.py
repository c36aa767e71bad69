"""Cross-scan and cross-merge move data and do no arithmetic worth counting (the merge's adds are
element-wise, which the official tables count as 0): no FLOP rule, so ``torch.utils.flop_counter``
counts their Triton operators as 0, as it counts the tensor-op gathers."""
