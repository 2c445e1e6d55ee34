# 70-dlq.cmake - the dead-letter queue (src/dlq/: append-only segments of
# CRC32C-checked JSON records), its unit test (crash test included), the
# `sluice dlq` integration test with its record writer, and the fuzzer.
# The module needs only jansson, pthreads, core/utf8, core/dynbuf,
# core/status and http/openai_json (its JSON string escaper), so the fuzzer
# builds from these files alone.
set(SL_DLQ_SOURCES ${CMAKE_SOURCE_DIR}/src/dlq/dlq.c)
target_sources(sluice_obj PRIVATE ${SL_DLQ_SOURCES})

sl_add_test(test_dlq SOURCES tests/unit/test_dlq.c TIMEOUT 180)

# tests/integration/dlq_writer.c appends records to a directory (the CLI
# only reads, purges and replays); dlq_cli.sh drives `sluice dlq` with it.
add_executable(dlq_writer tests/integration/dlq_writer.c)
target_link_libraries(dlq_writer PRIVATE sluice_static)
set_target_properties(dlq_writer PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
add_test(NAME it_dlq_cli
  COMMAND bash ${CMAKE_SOURCE_DIR}/tests/integration/dlq_cli.sh
          $<TARGET_FILE:sluice> $<TARGET_FILE:dlq_writer>)
set_tests_properties(it_dlq_cli PROPERTIES TIMEOUT 120)

# The record reader on arbitrary segment bytes (`make fuzz` runs it with
# fuzz/corpus/dlq: real segments written by dlq_writer).
if(SLUICE_FUZZ)
  add_executable(fuzz_dlq fuzz/fuzz_dlq.c ${SL_DLQ_SOURCES}
    ${CMAKE_SOURCE_DIR}/src/core/utf8.c ${CMAKE_SOURCE_DIR}/src/core/dynbuf.c
    ${CMAKE_SOURCE_DIR}/src/core/status.c ${CMAKE_SOURCE_DIR}/src/http/openai_json.c)
  target_include_directories(fuzz_dlq PRIVATE
    ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src)
  target_compile_options(fuzz_dlq PRIVATE
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
    -fno-omit-frame-pointer)
  target_link_options(fuzz_dlq PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_dlq PRIVATE PkgConfig::JANSSON Threads::Threads)
  set_target_properties(fuzz_dlq PROPERTIES
    RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
endif()
