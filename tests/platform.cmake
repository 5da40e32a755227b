# Platform (label unit): the weight-path decision table on fake Jetson/H100 attribute sets and the chunked
# read-and-drop reader (platform/device_policy.c, platform/weights_read.c). The same binary with --live (label
# gpu) reads the real device's attributes and runs the reader into device memory; it SKIPs without a GPU.
em_add_test(NAME test_device_policy SOURCES test_device_policy.c LABELS unit)
if(EM_HAVE_CUDA)
  add_test(NAME test_device_policy_live COMMAND test_device_policy --live)
  set_tests_properties(test_device_policy_live PROPERTIES LABELS gpu SKIP_RETURN_CODE 77 TIMEOUT 120
                       ENVIRONMENT "EM_BUILD_DIR=${CMAKE_BINARY_DIR}")
endif()
