# Hybrid models (issue 5; docs/hybrid.md), label unit: the layer pattern (allocation algorithm and parsing),
# the attention and MLP twins against double-precision forms, and the executor's hybrid invariants (KV cache,
# chunking, prefill == decode, context limit) on a random hybrid blob written from C. The HF goldens of the
# NemotronH hybrids run in tests/golden.cmake's fixture loop.
em_add_test(NAME test_pattern SOURCES test_pattern.c LABELS unit)
em_add_test(NAME test_ref_attn_mlp SOURCES test_ref_attn_mlp.c LABELS unit)
em_add_test(NAME test_hybrid SOURCES test_hybrid.c LABELS unit)
