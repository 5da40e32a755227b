# Packaging (label package): the installed library, header, CMake package and pkg-config file work for a
# consumer program. (Debian packages and the deployment image come with the Jetson issue.)
add_test(NAME test_install COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_install.sh ${CMAKE_COMMAND}
         ${CMAKE_BINARY_DIR} ${CMAKE_BINARY_DIR}/install-test)
set_tests_properties(test_install PROPERTIES LABELS package TIMEOUT 300)
