# Blob format v1 (runtime/blob.c, runtime/blob_write.c, docs/blob-format.md): writer -> reader round trip, and the
# corruption matrix (truncations, byte flips, crafted files with recomputed checksums). Both run in a few seconds
# and are meant to pass under -DEM_SANITIZE=address,undefined.
em_add_test(NAME test_blob_roundtrip SOURCES test_blob_roundtrip.c LABELS blob TIMEOUT 60)
em_add_test(NAME test_blob_corrupt SOURCES test_blob_corrupt.c LABELS blob TIMEOUT 120)
