# 80-redact.cmake - PII redaction and the safety filter (src/post/redact.c,
# PCRE2 with JIT): its unit test with the labeled set tests/data/pii_labeled.tsv,
# the `sluice redact` integration test, the fuzzer and the benchmark.
# The module needs only PCRE2, core/dynbuf and sluice.h's status enum, so
# the fuzzer and the benchmark build from these files alone.
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)

set(SL_REDACT_SOURCES ${CMAKE_SOURCE_DIR}/src/post/redact.c)
target_sources(sluice_obj PRIVATE ${SL_REDACT_SOURCES})
target_link_libraries(sluice_obj PUBLIC PkgConfig::PCRE2)
cmake_language(DEFER CALL target_link_libraries sluice_shared PUBLIC PkgConfig::PCRE2)

sl_add_test(test_redact SOURCES tests/unit/test_redact.c TIMEOUT 300)
if(TARGET test_redact)
  target_compile_definitions(test_redact PRIVATE
    SL_TEST_DATA_DIR="${CMAKE_SOURCE_DIR}/tests/data")
endif()

# `sluice redact` on stdin: whole and streamed output identical, exit codes.
add_test(NAME it_redact
  COMMAND bash ${CMAKE_SOURCE_DIR}/tests/data/pii_cli.sh $<TARGET_FILE:sluice>
          ${CMAKE_SOURCE_DIR}/tests/data)
set_tests_properties(it_redact PROPERTIES TIMEOUT 120)

# Micro-benchmark (JSON lines): build/bench/redact.
add_executable(bench_redact bench/redact.c ${SL_REDACT_SOURCES}
  ${CMAKE_SOURCE_DIR}/src/core/dynbuf.c)
target_include_directories(bench_redact PRIVATE
  ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(bench_redact PRIVATE PkgConfig::PCRE2)
set_target_properties(bench_redact PROPERTIES OUTPUT_NAME redact
  RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bench)

# fuzz_redact runs on fuzz/corpus/redact (see `make fuzz`).
if(SLUICE_FUZZ)
  add_executable(fuzz_redact fuzz/fuzz_redact.c ${SL_REDACT_SOURCES}
    ${CMAKE_SOURCE_DIR}/src/core/dynbuf.c)
  target_include_directories(fuzz_redact PRIVATE
    ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src)
  target_compile_options(fuzz_redact PRIVATE
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
    -fno-omit-frame-pointer)
  target_link_options(fuzz_redact PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_redact PRIVATE PkgConfig::PCRE2)
  set_target_properties(fuzz_redact PROPERTIES
    RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
endif()
