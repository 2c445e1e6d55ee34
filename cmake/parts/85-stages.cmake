# 85-stages.cmake - the stage kinds that do their real job (src/stages/real.c):
# retrieval through a retriever, template assembly under a token budget,
# redaction and safety filtering.  Uses the parts 80-rag, 80-assemble and
# 80-redact.
target_sources(sluice_obj PRIVATE ${CMAKE_SOURCE_DIR}/src/stages/real.c)

add_test(NAME it_rag
  COMMAND bash ${CMAKE_SOURCE_DIR}/tests/integration/rag.sh $<TARGET_FILE:sluice>)
set_tests_properties(it_rag PROPERTIES TIMEOUT 180)

sl_add_test(test_stages SOURCES tests/unit/test_stages.c)
