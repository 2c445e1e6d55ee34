# 80-assemble.cmake - prompt assembly (src/assemble/): templates compiled and
# validated at load, the default token counter, the budget fitter (drop,
# then truncate documents), request variables from JSON; the `sluice
# assemble` CLI lives in cli/assemble.c.  See docs/internals/assemble.md.
# The module needs only jansson, core/utf8, core/dynbuf and core/status, so
# the fuzzer builds from these files alone.
set(SL_ASSEMBLE_SOURCES
  ${CMAKE_SOURCE_DIR}/src/assemble/template.c
  ${CMAKE_SOURCE_DIR}/src/assemble/budget.c
  ${CMAKE_SOURCE_DIR}/src/assemble/assemble.c
  ${CMAKE_SOURCE_DIR}/src/assemble/request.c)
target_sources(sluice_obj PRIVATE ${SL_ASSEMBLE_SOURCES})

sl_add_test(test_template SOURCES tests/unit/test_template.c)
sl_add_test(test_budget SOURCES tests/unit/test_budget.c)
# the examples' templates are compiled by test_template (they must validate)
if(TARGET test_template)
  target_compile_definitions(test_template PRIVATE
    SL_EXAMPLES_DIR="${CMAKE_SOURCE_DIR}/examples")
endif()

# `sluice assemble` end to end: the example request through the example
# template (plain and --chat), a budget that cannot fit (exit 1), a bad
# template (exit 1, FILE:LINE:COL) and a usage error (exit 2).
set(SL_ASM_EX ${CMAKE_SOURCE_DIR}/examples/templates)
add_test(NAME it_assemble_prompt COMMAND bash -c
  "$<TARGET_FILE:sluice> assemble --template ${SL_ASM_EX}/rag.tmpl < ${SL_ASM_EX}/request.json")
set_tests_properties(it_assemble_prompt PROPERTIES
  PASS_REGULAR_EXPRESSION "\\[design#outcomes\\]\nEvery request ends exactly once.*Question: How does it handle overload\\?\nAnswer:")
add_test(NAME it_assemble_chat COMMAND bash -c
  "$<TARGET_FILE:sluice> assemble --chat --template ${SL_ASM_EX}/rag.tmpl --system ${SL_ASM_EX}/system.tmpl --examples ${SL_ASM_EX}/fewshot.json < ${SL_ASM_EX}/request.json | python3 -c 'import json,sys; m=json.load(sys.stdin); assert [x[\"role\"] for x in m]==[\"system\",\"user\",\"assistant\",\"user\",\"assistant\",\"user\"], m; assert \"Sluice\" in m[0][\"content\"]; print(\"chat ok\")'")
set_tests_properties(it_assemble_chat PROPERTIES PASS_REGULAR_EXPRESSION "chat ok")
add_test(NAME it_assemble_toobig COMMAND bash -c
  "$<TARGET_FILE:sluice> assemble --max-prompt-tokens 20 --template ${SL_ASM_EX}/rag.tmpl < ${SL_ASM_EX}/request.json; echo exit=$?")
set_tests_properties(it_assemble_toobig PROPERTIES
  PASS_REGULAR_EXPRESSION "SL_ETOOBIG: prompt without documents needs [0-9]+ tokens \\(query: [0-9]+\\), over max_prompt_tokens 20.*exit=1")
add_test(NAME it_assemble_badtmpl COMMAND bash -c
  "printf 'Hi\\n  {{qeury}}\\n' > bad.tmpl && echo '{}' | $<TARGET_FILE:sluice> assemble --template bad.tmpl; echo exit=$?")
set_tests_properties(it_assemble_badtmpl PROPERTIES
  PASS_REGULAR_EXPRESSION "bad.tmpl:2:3: unknown variable 'qeury'.*exit=1")
add_test(NAME it_assemble_usage COMMAND bash -c
  "$<TARGET_FILE:sluice> assemble --chat < /dev/null; echo exit=$?")
set_tests_properties(it_assemble_usage PROPERTIES PASS_REGULAR_EXPRESSION "exit=2")

# fuzz_template runs on fuzz/corpus/template (see `make fuzz`).
if(SLUICE_FUZZ)
  add_executable(fuzz_template fuzz/fuzz_template.c ${SL_ASSEMBLE_SOURCES}
    ${CMAKE_SOURCE_DIR}/src/core/utf8.c ${CMAKE_SOURCE_DIR}/src/core/dynbuf.c
    ${CMAKE_SOURCE_DIR}/src/core/status.c)
  target_include_directories(fuzz_template PRIVATE
    ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src)
  target_compile_options(fuzz_template PRIVATE
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
    -fno-omit-frame-pointer)
  target_link_options(fuzz_template PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_template PRIVATE PkgConfig::JANSSON m)
  set_target_properties(fuzz_template PROPERTIES
    RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
endif()
