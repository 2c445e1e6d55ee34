# 40-h1.cmake - sluice's HTTP/1.1 server layer (src/http/h1.c) and its
# parser (src/http/h1_parse.c: no libevent, no allocation, fuzzed alone),
# the unit test (real sockets on 127.0.0.1), a hello server for wrk
# (bench/h1_hello.c: `--mode h1` or `--mode evhttp`), and the fuzzer.
set(SL_H1_PARSE_SOURCES ${CMAKE_SOURCE_DIR}/src/http/h1_parse.c)
target_sources(sluice_obj PRIVATE ${CMAKE_SOURCE_DIR}/src/http/h1.c ${SL_H1_PARSE_SOURCES})

sl_add_test(test_h1 SOURCES tests/unit/test_h1.c TIMEOUT 120)

add_executable(bench_h1_hello bench/h1_hello.c)
target_link_libraries(bench_h1_hello PRIVATE sluice_static)
set_target_properties(bench_h1_hello PROPERTIES OUTPUT_NAME h1_hello
  RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bench)

# fuzz_h1 runs on fuzz/corpus/h1 (see `make fuzz`); it links the parser
# only, so nothing else needs fuzzer instrumentation.
if(SLUICE_FUZZ)
  add_executable(fuzz_h1 fuzz/fuzz_h1.c ${SL_H1_PARSE_SOURCES})
  target_include_directories(fuzz_h1 PRIVATE
    ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src)
  target_compile_options(fuzz_h1 PRIVATE
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
    -fno-omit-frame-pointer)
  target_link_options(fuzz_h1 PRIVATE -fsanitize=fuzzer,address,undefined)
  set_target_properties(fuzz_h1 PROPERTIES
    RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
endif()
