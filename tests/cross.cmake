# Cross builds (label cross; the aarch64-cpu preset, scripts/stages/40-cross.sh). In a cross build ctest runs
# every test program through CMAKE_CROSSCOMPILING_EMULATOR (qemu-aarch64), so the whole CPU suite runs as
# aarch64 code. Some tests cannot run that way as written; they are adjusted here, at the end of tests/
# (deferred, so that the areas' files have defined them), each for a stated reason:
#
# Cannot run under user-mode emulation (DISABLED, named in the ctest output as "Not Run (Disabled)"):
#   - test_install builds a consumer with the HOST compiler against the installed library; in a cross build
#     that library is aarch64. The arm64 .deb is checked instead by 40-cross.sh (dpkg -x into a scratch root,
#     its em-generate run under qemu on the packaged model).
#   - test_rel_valgrind runs the host's valgrind (x86_64), which cannot instrument an aarch64 program;
#     memcheck runs in the native stage.
#   - test_determinism re-executes itself (/proc/self/exe through popen, i.e. /bin/sh): without binfmt_misc
#     (containers, CI) the kernel cannot start an aarch64 program. Every test gets EM_TEST_EMULATOR (the
#     emulator command line) in its environment: a test that puts it in front of a command it spawns runs here.
# Run through wrappers (where binfmt_misc has no qemu-aarch64 entry): the test is the same program with the
# same arguments, except that the programs it starts (em-chat, em-generate, em-pack) are given as scripts that
# run them under the emulator: test_chat, test_pack_cli, test_int8_blob -> <name>_emulated.
# Shortened for time (qemu's software floating point runs these ~30x slower than native; the same reduction the
# sanitizer builds make): model_golden_<arch> over the first 256 held-out ids instead of all 2014,
# test_int8_accuracy over 256 ids instead of 1024, prefill_golden_mamba2 without the 5000-token prompt and with
# the token-by-token check (exact on the CPU: prefill and decode run the same twins) up to 256 tokens
# -> <name>_emulated.
# (Keep the re-registered arguments in step with tests/tokenizer.cmake, pack.cmake, int8.cmake, model.cmake and
# prefill.cmake.)
#
# GCC 12.2 for aarch64 (Debian 12's cross compiler) stops with an internal compiler error in
# vect_transform_reduction on the fmax() reductions of some tests at -O3 (test_quant.c, test_hybrid.c): loop
# vectorization is turned off for the test programs only, not for the library they test.
#
# cross_check_arch proves that the test programs are aarch64 code (ELF e_machine 183), not host code.
if(CMAKE_SCRIPT_MODE_FILE) # cmake -DFILE=prog -P cross.cmake: is prog an aarch64 ELF?
  file(READ ${FILE} magic LIMIT 4 HEX)
  file(READ ${FILE} machine OFFSET 18 LIMIT 2 HEX)
  if(NOT magic STREQUAL "7f454c46" OR NOT machine STREQUAL "b700")
    message(FATAL_ERROR "${FILE}: not an aarch64 ELF (magic ${magic}, e_machine ${machine}; aarch64 is b700)")
  endif()
  message(STATUS "${FILE}: aarch64 ELF")
  return()
endif()
if(NOT CMAKE_CROSSCOMPILING)
  return()
endif()

# em_cross_rerun(OLD NEW COMMAND ...): disables test OLD and adds NEW with the given command and OLD's labels,
# environment, fixtures, working directory and skip code (timeout: OLD's, at least 600 s).
function(em_cross_rerun old new)
  foreach(p LABELS ENVIRONMENT FIXTURES_REQUIRED WORKING_DIRECTORY SKIP_RETURN_CODE TIMEOUT)
    get_test_property(${old} ${p} v_${p})
  endforeach()
  set_tests_properties(${old} PROPERTIES DISABLED TRUE)
  add_test(NAME ${new} COMMAND ${ARGN})
  foreach(p LABELS ENVIRONMENT FIXTURES_REQUIRED WORKING_DIRECTORY SKIP_RETURN_CODE)
    if(v_${p})
      set_tests_properties(${new} PROPERTIES ${p} "${v_${p}}")
    endif()
  endforeach()
  if(NOT v_TIMEOUT OR v_TIMEOUT LESS 600)
    set(v_TIMEOUT 600)
  endif()
  set_tests_properties(${new} PROPERTIES TIMEOUT ${v_TIMEOUT})
endfunction()

function(em_cross_fixups)
  if(CMAKE_C_COMPILER_ID STREQUAL "GNU" AND CMAKE_C_COMPILER_VERSION VERSION_LESS 13)
    get_property(targets DIRECTORY PROPERTY BUILDSYSTEM_TARGETS)
    foreach(t ${targets})
      get_target_property(type ${t} TYPE)
      if(type STREQUAL "EXECUTABLE" OR type STREQUAL "STATIC_LIBRARY")
        target_compile_options(${t} PRIVATE $<$<COMPILE_LANGUAGE:C>:-fno-tree-loop-vectorize>)
      endif()
    endforeach()
  endif()

  list(JOIN CMAKE_CROSSCOMPILING_EMULATOR " " emu)
  get_property(tests DIRECTORY PROPERTY TESTS)
  foreach(t ${tests})
    set_property(TEST ${t} APPEND PROPERTY ENVIRONMENT "EM_TEST_EMULATOR=${emu}")
  endforeach()

  foreach(t test_install test_rel_valgrind test_determinism)
    if(TEST ${t})
      set_tests_properties(${t} PROPERTIES DISABLED TRUE)
    endif()
  endforeach()

  set(binfmt OFF)
  if(EXISTS /proc/sys/fs/binfmt_misc/qemu-aarch64)
    file(READ /proc/sys/fs/binfmt_misc/qemu-aarch64 b)
    if(b MATCHES "^enabled")
      set(binfmt ON)
    endif()
  endif()
  if(NOT binfmt AND CMAKE_CROSSCOMPILING_EMULATOR)
    set(w ${CMAKE_BINARY_DIR}/emulated)
    foreach(prog em-chat em-generate em-pack)
      if(TARGET ${prog})
        file(GENERATE OUTPUT ${w}/${prog}
             CONTENT "#!/bin/sh\n# ${prog} under the emulator (tests/cross.cmake)\nexec ${emu} $<TARGET_FILE:${prog}> \"$@\"\n"
             FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
      endif()
    endforeach()
    if(TEST test_chat)
      em_cross_rerun(test_chat test_chat_emulated ${CMAKE_CURRENT_SOURCE_DIR}/test_chat.sh ${w}/em-chat ${w}/em-generate
                     ${tok_dir}/tiny_spm.emb ${tok_dir}/tiny_none.emb ${tok_dir} ${tok_hybrid})
    endif()
    foreach(t test_pack_cli test_int8_blob)
      if(TEST ${t})
        em_cross_rerun(${t} ${t}_emulated ${t} ${w}/em-pack)
      endif()
    endforeach()
    message(STATUS "cross: no binfmt_misc entry for aarch64: test_chat, test_pack_cli, test_int8_blob start their "
                   "programs through wrappers (build/.../emulated/)")
  endif()

  foreach(arch hybrid mamba2)
    if(TEST model_golden_${arch})
      em_cross_rerun(model_golden_${arch} model_golden_${arch}_emulated test_model_golden ${models_dir}/${arch}.emb
                     ${models_src}/${arch}/golden.safetensors ${models_src}/heldout.txt ${models_src}/prompts.txt
                     0.005 1e-4 256)
    endif()
  endforeach()
  if(TEST test_int8_accuracy)
    em_cross_rerun(test_int8_accuracy test_int8_accuracy_emulated test_int8_accuracy ${CMAKE_SOURCE_DIR}/models 256)
  endif()
  if(TEST prefill_golden_mamba2)
    em_cross_rerun(prefill_golden_mamba2 prefill_golden_mamba2_emulated test_prefill_golden ${prefill_blob}
                   ${prefill_golden} cpu 1e-4 1e-4 1e-4 256 1000 256)
  endif()
endfunction()
cmake_language(DEFER CALL em_cross_fixups)

add_test(NAME cross_check_arch COMMAND ${CMAKE_COMMAND} -DFILE=$<TARGET_FILE:test_device_policy>
         -P ${CMAKE_CURRENT_LIST_DIR}/cross.cmake)
set_tests_properties(cross_check_arch PROPERTIES LABELS cross)
