# 60-config.cmake - the declarative configuration (src/config/: sluice.yaml
# loader, interpolation, validation, the embedded default), its unit test,
# the `sluice check-config` integration test and the fuzzer.
# The loader needs only libyaml, core/dynbuf and sluice.h's status enum, so
# the fuzzer builds from these files alone.
pkg_check_modules(YAML REQUIRED IMPORTED_TARGET yaml-0.1)

set(SL_CONFIG_SOURCES
  ${CMAKE_SOURCE_DIR}/src/config/config.c
  ${CMAKE_SOURCE_DIR}/src/config/tree.c
  ${CMAKE_SOURCE_DIR}/src/config/interp.c
  ${CMAKE_SOURCE_DIR}/src/config/default.c)
target_sources(sluice_obj PRIVATE ${SL_CONFIG_SOURCES})
target_link_libraries(sluice_obj PUBLIC PkgConfig::YAML)
# sluice_shared lists its dependencies itself and is defined after the
# parts: link libyaml into it once it exists.
cmake_language(DEFER CALL target_link_libraries sluice_shared PUBLIC PkgConfig::YAML)

sl_add_test(test_config SOURCES tests/unit/test_config.c TIMEOUT 120)

# check-config on examples/, on the broken files of tests/config/ (exact
# stderr), on unreadable files, and on `sluice config --print-default`.
add_test(NAME it_config
  COMMAND bash ${CMAKE_SOURCE_DIR}/tests/integration/config.sh $<TARGET_FILE:sluice>)
set_tests_properties(it_config PROPERTIES TIMEOUT 120)

# fuzz_config runs on fuzz/corpus/config (see `make fuzz`).
if(SLUICE_FUZZ)
  add_executable(fuzz_config fuzz/fuzz_config.c ${SL_CONFIG_SOURCES}
    ${CMAKE_SOURCE_DIR}/src/core/dynbuf.c)
  target_include_directories(fuzz_config PRIVATE
    ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src)
  target_compile_options(fuzz_config PRIVATE
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
    -fno-omit-frame-pointer)
  target_link_options(fuzz_config PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_config PRIVATE PkgConfig::YAML)
  set_target_properties(fuzz_config PROPERTIES
    RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
endif()
