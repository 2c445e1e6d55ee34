# 85-stages.cmake - the stage kinds that do their real job (src/stages/real.c):
# retrieval through a retriever, template assembly under a token budget,
# redaction and safety filtering.  Uses the parts 80-rag, 80-assemble and
# 80-redact.
target_sources(sluice_obj PRIVATE ${CMAKE_SOURCE_DIR}/src/stages/real.c
  ${CMAKE_SOURCE_DIR}/src/rag/remote.c)
# the PostgreSQL retriever (src/rag/remote.c)
pkg_check_modules(PQ REQUIRED IMPORTED_TARGET libpq)
target_link_libraries(sluice_obj PUBLIC PkgConfig::PQ)
cmake_language(DEFER CALL target_link_libraries sluice_shared PUBLIC PkgConfig::PQ)

add_test(NAME it_rag
  COMMAND bash ${CMAKE_SOURCE_DIR}/tests/integration/rag.sh $<TARGET_FILE:sluice>)
set_tests_properties(it_rag PROPERTIES TIMEOUT 180)

sl_add_test(test_stages SOURCES tests/unit/test_stages.c)

# PostgreSQL (started by the script itself, on loopback) and HTTP retrievers.
add_test(NAME it_remote_retrievers
  COMMAND bash ${CMAKE_SOURCE_DIR}/tests/integration/remote_retrievers.sh $<TARGET_FILE:sluice>)
set_tests_properties(it_remote_retrievers PROPERTIES TIMEOUT 180)
