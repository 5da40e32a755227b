# The bundled trained models (issue 6; label golden): em-pack packs models/<arch>/ (bf16 weights, the
# tokenizer.model beside config.json) into the build dir, then test_model_golden checks the CPU backend against
# HF's goldens (models/<arch>/golden.safetensors, tools/goldens/make_model_goldens.py): tokenizer ids,
# held-out perplexity within 0.5 %, last-position logits of 3 prompts within 1e-4, 32 greedy tokens identical.
# These prove that the models as shipped run correctly; they are slower (~10 s each) than the tiny fixtures.
if(TARGET em-pack)
  set(models_src ${CMAKE_SOURCE_DIR}/models)
  set(models_dir ${CMAKE_BINARY_DIR}/models)
  file(MAKE_DIRECTORY ${models_dir})
  # Sanitizer builds (Debug, no OpenMP: ~15x slower) check the first 256 held-out ids, not all 2014.
  set(n_heldout 0)
  if(EM_SANITIZE)
    set(n_heldout 256)
  endif()
  add_executable(test_model_golden test_model_golden.c)
  target_link_libraries(test_model_golden PRIVATE em_internal em_testutil em_packlib m)
  if(EM_HAVE_CUDA)
    add_executable(test_snapshot_cuda test_snapshot_cuda.c)
    target_link_libraries(test_snapshot_cuda PRIVATE em_internal em_testutil)
  endif()
  foreach(arch hybrid mamba2)
    # the per-model tokenizer copies (what em-pack finds beside config.json) must be models/tokenizer.model
    add_test(NAME model_${arch}_tokenizer_copy
             COMMAND ${CMAKE_COMMAND} -E compare_files ${models_src}/tokenizer.model ${models_src}/${arch}/tokenizer.model)
    set_tests_properties(model_${arch}_tokenizer_copy PROPERTIES LABELS golden)
    set(b ${models_dir}/${arch}.emb)
    add_test(NAME pack_model_${arch} COMMAND em-pack ${models_src}/${arch} -o ${b})
    set_tests_properties(pack_model_${arch} PROPERTIES LABELS golden FIXTURES_SETUP model_${arch})
    add_test(NAME model_golden_${arch}
             COMMAND test_model_golden ${b} ${models_src}/${arch}/golden.safetensors ${models_src}/heldout.txt
                     ${models_src}/prompts.txt 0.005 1e-4 ${n_heldout})
    set_tests_properties(model_golden_${arch} PROPERTIES LABELS golden TIMEOUT 300 FIXTURES_REQUIRED model_${arch})
    if(EM_HAVE_CUDA) # the same on the CUDA executor (SKIP without a device): prompts > 8 tokens run the GEMMs on
      # bf16-rounded activations and the TF32 SSD scan (runtime/cuda_exec.c), so the logit rows get the bf16 bound
      add_test(NAME model_golden_${arch}_cuda
               COMMAND test_model_golden ${b} ${models_src}/${arch}/golden.safetensors ${models_src}/heldout.txt
                       ${models_src}/prompts.txt 0.005 2e-2 0 cuda)
      set_tests_properties(model_golden_${arch}_cuda PROPERTIES LABELS "golden;gpu" TIMEOUT 300 SKIP_RETURN_CODE 77
                           FIXTURES_REQUIRED model_${arch})
      # the same with the weights read through the Jetson path (read into device memory through a staging
      # buffer, the file's pages dropped behind it; platform/device_policy.h), forced on a discrete GPU
      add_test(NAME model_golden_${arch}_cuda_read_drop
               COMMAND test_model_golden ${b} ${models_src}/${arch}/golden.safetensors ${models_src}/heldout.txt
                       ${models_src}/prompts.txt 0.005 2e-2 0 cuda)
      set_tests_properties(model_golden_${arch}_cuda_read_drop PROPERTIES LABELS "golden;gpu" TIMEOUT 300
                           SKIP_RETURN_CODE 77 FIXTURES_REQUIRED model_${arch} ENVIRONMENT EM_WEIGHT_PATH=read-drop)
      # snapshots of CUDA sessions (exact, and across backends) and seeded sampling on the device (issue 11)
      add_test(NAME test_snapshot_cuda_${arch} COMMAND test_snapshot_cuda ${b})
      set_tests_properties(test_snapshot_cuda_${arch} PROPERTIES LABELS gpu TIMEOUT 300 SKIP_RETURN_CODE 77
                           FIXTURES_REQUIRED model_${arch})
    endif()
  endforeach()
endif()
