# Public API: the header compiles as C99 and links against the shared library; bad arguments get statuses.
add_executable(test_header_c test_header_c.c)
target_link_libraries(test_header_c PRIVATE edgemamba)
set_target_properties(test_header_c PROPERTIES C_STANDARD 99 C_EXTENSIONS OFF)
target_compile_options(test_header_c PRIVATE -pedantic -Werror)
add_test(NAME test_header_c COMMAND test_header_c)
set_tests_properties(test_header_c PROPERTIES LABELS unit)

em_add_test(NAME test_api SOURCES test_api.c LABELS unit)
em_add_test(NAME test_session SOURCES test_session.c LABELS unit)
