# INT8 weights, per output channel (issue 10; docs/int8.md): the quantizer (quant/), the twin's I8 path, the
# blob's INT8 fields, em-pack --dtype int8 / --requantize, the accuracy of the bundled models, and the logits
# cosine of a random model (CPU here; --backend cuda on the GPU machine). The CUDA GEMV's test is in this file
# too (label gpu, built with CUDA only).
em_add_test(NAME test_quant SOURCES test_quant.c LABELS unit)
em_add_test(NAME test_int8_ref SOURCES test_int8_ref.c LABELS unit)
if(TARGET em_packlib)
  em_add_test(NAME test_int8_blob SOURCES test_int8_blob.c LABELS blob LIBS em_packlib ARGS $<TARGET_FILE:em-pack>)
  add_dependencies(test_int8_blob em-pack)
endif()
if(TARGET em_packlib)
  # BF16 vs INT8 perplexity of the two bundled trained models (models/), both packed by the test, over the
  # first 1024 of the 2014 held-out ids (4 prefills of 1024 ids: ~30 s on 2 cores; all 2014: ~65 s); sanitizer
  # builds (~15x slower) take the first 128 (~60 s).
  set(int8_n_ids 1024)
  if(EM_SANITIZE)
    set(int8_n_ids 128)
  endif()
  em_add_test(NAME test_int8_accuracy SOURCES test_int8_accuracy.c LABELS golden LIBS em_packlib
              ARGS ${CMAKE_SOURCE_DIR}/models ${int8_n_ids})
  if(EM_HAVE_CUDA)
    # The same on the CUDA backend, and its INT8 perplexity against the CPU backend's with both prompt paths for
    # INT8 weights (EM_I8_PREFILL=gemv, and =gemm: the default). Label gpu: SKIPs without a device.
    add_test(NAME test_int8_accuracy_cuda COMMAND test_int8_accuracy ${CMAKE_SOURCE_DIR}/models 1024 cuda)
    set_tests_properties(test_int8_accuracy_cuda PROPERTIES LABELS gpu SKIP_RETURN_CODE 77 TIMEOUT 300)
  endif()
endif()
if(TARGET em_packlib)
  # Last-position logits cosine, BF16 vs INT8, on random d_model 1024, 4-layer Mamba-2 and hybrid models (CPU).
  # The 8B form of the same check runs on the GPU machine: test_int8_cosine --config ... --backend cuda.
  # Sanitizer builds (~15x slower): 8 tokens and no F32 reference blobs (~30 s instead of ~3 min).
  set(int8_cos_args "")
  if(EM_SANITIZE)
    set(int8_cos_args --tokens 8 --no-f32)
  endif()
  em_add_test(NAME test_int8_cosine SOURCES test_int8_cosine.c LABELS unit LIBS em_packlib ARGS ${int8_cos_args})
endif()
if(EM_HAVE_CUDA)
  # The INT8 GEMV against the twin (label gpu: SKIPs without a device); --perf / --sweep on the GPU machine.
  em_add_test(NAME test_linear_i8_cuda SOURCES test_linear_i8_cuda.c gpu_test.c gpu_bw.cu LABELS gpu
              LIBS CUDA::cudart)
endif()
