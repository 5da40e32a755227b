# em-plan (label unit): its fit and decode-speed answers on two packed fixtures (pure Mamba-2 in bf16, the
# GELU hybrid in f32: the golden fixtures of tests/golden.cmake), checked against numbers computed in the
# test from the fixtures' HF config.json. The tool's source is compiled into the test (its main() left out),
# so that the test also runs under an emulator; em_plan_cli runs the installed program itself once.
if(TARGET em-pack AND TARGET em-plan)
  foreach(fx "mamba2_tiny;bf16;2" "nemotronh_hybrid_gelu;f32;4")
    list(GET fx 0 fixture)
    list(GET fx 1 dtype)
    list(GET fx 2 bytes)
    set(t test_em_plan_${fixture})
    add_executable(${t} test_em_plan.c ${CMAKE_SOURCE_DIR}/tools/em-plan.c)
    target_compile_definitions(${t} PRIVATE EM_PLAN_TOOL_NO_MAIN)
    target_link_libraries(${t} PRIVATE em_internal em_testutil PkgConfig::CJSON)
    set(work ${CMAKE_BINARY_DIR}/em_plan_${fixture})
    file(MAKE_DIRECTORY ${work})
    add_test(NAME ${t} COMMAND ${t} ${CMAKE_BINARY_DIR}/golden/${fixture}_${dtype}.emb
             ${CMAKE_CURRENT_SOURCE_DIR}/data/${fixture}/config.json ${bytes} ${work})
    set_tests_properties(${t} PROPERTIES LABELS unit TIMEOUT 120 FIXTURES_REQUIRED blob_${fixture}_${dtype})
  endforeach()
  add_test(NAME em_plan_cli COMMAND em-plan -m ${CMAKE_BINARY_DIR}/golden/nemotronh_hybrid_gelu_f32.emb -c 8192)
  set_tests_properties(em_plan_cli PROPERTIES LABELS unit FIXTURES_REQUIRED blob_nemotronh_hybrid_gelu_f32
                       PASS_REGULAR_EXPRESSION "orin-nano-8gb .* yes .*thor-128gb .* yes .*h200-141gb")
endif()
