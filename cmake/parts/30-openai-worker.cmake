# 30-openai-worker.cmake - the OpenAI-compatible upstream worker
# (src/worker/openai/: openai.c - the worker and the libcurl transport -,
# native.c - the native HTTP/1.1 client for http:// upstreams - and h1c.c,
# its response parser: pure code, fuzzed alone), its unit tests (the worker
# against an in-process libevent evhttp mock upstream, run once per
# transport; the parser split at every byte) and the parser's fuzzer.
set(SL_H1C_SOURCES ${CMAKE_SOURCE_DIR}/src/worker/openai/h1c.c)
target_sources(sluice_obj PRIVATE
  ${CMAKE_SOURCE_DIR}/src/worker/openai/openai.c
  ${CMAKE_SOURCE_DIR}/src/worker/openai/native.c
  ${SL_H1C_SOURCES})

sl_add_test(test_openai_worker SOURCES tests/unit/test_openai_worker.c TIMEOUT 240)
sl_add_test(test_h1c SOURCES tests/unit/test_h1c.c TIMEOUT 120)

# fuzz_h1c runs on fuzz/corpus/h1c (see `make fuzz`); it links the parser
# only.
if(SLUICE_FUZZ)
  add_executable(fuzz_h1c fuzz/fuzz_h1c.c ${SL_H1C_SOURCES})
  target_include_directories(fuzz_h1c PRIVATE
    ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src)
  target_compile_options(fuzz_h1c PRIVATE
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
    -fno-omit-frame-pointer)
  target_link_options(fuzz_h1c PRIVATE -fsanitize=fuzzer,address,undefined)
  set_target_properties(fuzz_h1c PROPERTIES
    RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
endif()
