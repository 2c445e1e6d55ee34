# 10-parsers.cmake - the HTTP gateway's parsers and serialisers:
#   src/core/utf8      strict UTF-8 validation
#   src/http/openai_req   OpenAI request parsing/validation (hand-written fast
#                         path, jansson for the rest and for every error)
#   src/http/openai_json  OpenAI response / SSE writers
#   src/worker/openai/sse incremental SSE parser + stream chunk extractor
# They depend only on sluice.h's status enum, core/dynbuf (bounded buffer),
# jansson and libc, so the fuzzers and the benchmark below build from these
# files alone.

set(SL_PARSER_SOURCES
  ${CMAKE_SOURCE_DIR}/src/core/utf8.c
  ${CMAKE_SOURCE_DIR}/src/http/openai_req.c
  ${CMAKE_SOURCE_DIR}/src/http/openai_json.c
  ${CMAKE_SOURCE_DIR}/src/worker/openai/sse.c)
# core/dynbuf.c is already part of sluice_obj; the standalone programs
# compile their own copy.
set(SL_PARSER_STANDALONE ${SL_PARSER_SOURCES} ${CMAKE_SOURCE_DIR}/src/core/dynbuf.c)

target_sources(sluice_obj PRIVATE ${SL_PARSER_SOURCES})

sl_add_test(test_utf8 SOURCES tests/unit/test_utf8.c)
sl_add_test(test_openai_req SOURCES tests/unit/test_openai_req.c)
sl_add_test(test_openai_json SOURCES tests/unit/test_openai_json.c)
sl_add_test(test_sse SOURCES tests/unit/test_sse.c)

# Micro-benchmark: hand-written chunk extractor vs jansson (JSON lines).
add_executable(bench_sse_extract bench/sse_extract.c ${SL_PARSER_STANDALONE})
target_include_directories(bench_sse_extract PRIVATE
  ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(bench_sse_extract PRIVATE PkgConfig::JANSSON)
set_target_properties(bench_sse_extract PROPERTIES OUTPUT_NAME sse_extract
  RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bench)

# Micro-benchmark: the request parser's fast path vs its jansson path (JSON lines).
add_executable(bench_openai_req bench/openai_req.c ${SL_PARSER_STANDALONE})
target_include_directories(bench_openai_req PRIVATE
  ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(bench_openai_req PRIVATE PkgConfig::JANSSON)
set_target_properties(bench_openai_req PROPERTIES OUTPUT_NAME openai_req
  RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bench)

# libFuzzer harnesses: fuzz_NAME runs on fuzz/corpus/NAME (see `make fuzz`).
# They link only the sources above + jansson, not sluice_obj, so the rest of
# the library need not be built with fuzzer instrumentation.
if(SLUICE_FUZZ)
  foreach(name openai_req openai_req_diff sse chunk)
    add_executable(fuzz_${name} fuzz/fuzz_${name}.c ${SL_PARSER_STANDALONE})
    target_include_directories(fuzz_${name} PRIVATE
      ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src)
    target_compile_options(fuzz_${name} PRIVATE
      -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
      -fno-omit-frame-pointer)
    target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_libraries(fuzz_${name} PRIVATE PkgConfig::JANSSON)
    set_target_properties(fuzz_${name} PROPERTIES
      RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
  endforeach()
endif()
