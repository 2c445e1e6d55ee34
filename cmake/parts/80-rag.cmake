# 80-rag.cmake - retrieval (src/rag/): the retriever interface and the
# built-in BM25 index (builder, tokenizer, versioned on-disk format), its
# unit test (hand-computed scores, bad input, MRR@10/nDCG@10 floors on the
# project's own docs), `sluice retrieve` (cli/retrieve.c, globbed), the
# benchmark bench/retrieve.c and the index-loader fuzzer.
set(SL_RAG_SOURCES
  ${CMAKE_SOURCE_DIR}/src/rag/bm25.c
  ${CMAKE_SOURCE_DIR}/src/rag/bm25_build.c
  ${CMAKE_SOURCE_DIR}/src/rag/tokenize.c)
target_sources(sluice_obj PRIVATE ${SL_RAG_SOURCES})

sl_add_test(test_bm25 SOURCES tests/unit/test_bm25.c TIMEOUT 180)
if(TARGET test_bm25)
  # the evaluation runs over the real docs; the CLI cases run the program
  target_compile_definitions(test_bm25 PRIVATE SL_SOURCE_DIR="${CMAKE_SOURCE_DIR}"
    SL_SLUICE_BIN="$<TARGET_FILE:sluice>")
  add_dependencies(test_bm25 sluice)
endif()

add_executable(bench_retrieve bench/retrieve.c)
target_link_libraries(bench_retrieve PRIVATE sluice_static)
set_target_properties(bench_retrieve PROPERTIES OUTPUT_NAME retrieve
  RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bench)

# The loader on arbitrary bytes: needs only bm25.c, tokenize.c, core/utf8.c
# and xxhash (`make fuzz` runs it with fuzz/corpus/bm25_load).
if(SLUICE_FUZZ)
  add_executable(fuzz_bm25_load fuzz/fuzz_bm25_load.c
    ${CMAKE_SOURCE_DIR}/src/rag/bm25.c ${CMAKE_SOURCE_DIR}/src/rag/tokenize.c
    ${CMAKE_SOURCE_DIR}/src/core/utf8.c)
  target_include_directories(fuzz_bm25_load PRIVATE
    ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src)
  target_compile_options(fuzz_bm25_load PRIVATE
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
    -fno-omit-frame-pointer)
  target_link_options(fuzz_bm25_load PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_bm25_load PRIVATE PkgConfig::XXHASH m)
  set_target_properties(fuzz_bm25_load PROPERTIES
    RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
endif()
