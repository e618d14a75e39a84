# fuzz_ds: the lock-free structures (ipc.h) attached or opened by name from
# untrusted bytes and operated on (tests/fuzz/fuzz_ds.c, whose header comment
# says how to run it for longer). Included by tests/fuzz/CMakeLists.txt;
# scripts/run-fuzzers (make fuzz) runs it with the other fuzz_* targets.
file(GLOB MK_FUZZ_DS_SRC CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/ds/*.c)
# src/ds calls the segment directory (mk_shm_obj_*) for its by-name paths.
file(GLOB MK_FUZZ_DS_SHM_SRC CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/shm/*.c)

add_executable(fuzz_ds fuzz_ds.c ${MK_FUZZ_LIB_SRC} ${MK_FUZZ_DS_SHM_SRC} ${MK_FUZZ_DS_SRC})
target_include_directories(fuzz_ds PRIVATE ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src)
target_compile_definitions(fuzz_ds PRIVATE _GNU_SOURCE=1 MK_BUILDING=1)
target_compile_options(fuzz_ds PRIVATE ${MK_FUZZ_FLAGS})
target_link_options(fuzz_ds PRIVATE ${MK_FUZZ_FLAGS})
target_link_libraries(fuzz_ds PRIVATE Threads::Threads $<$<NOT:$<BOOL:${WIN32}>>:rt>)

# Its seeds: every type built with mk_X_init, empty, partly used, full,
# wrapped, and damaged (tests/fuzz/seedgen_ds.c).
add_executable(seedgen_ds seedgen_ds.c ${MK_FUZZ_LIB_SRC} ${MK_FUZZ_DS_SHM_SRC} ${MK_FUZZ_DS_SRC})
target_include_directories(seedgen_ds PRIVATE ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src)
target_compile_definitions(seedgen_ds PRIVATE _GNU_SOURCE=1 MK_BUILDING=1)
target_link_libraries(seedgen_ds PRIVATE Threads::Threads $<$<NOT:$<BOOL:${WIN32}>>:rt>)
add_custom_target(fuzz_ds_corpus ALL
                  COMMAND ${CMAKE_COMMAND} -E rm -rf ${MK_FUZZ_CORPUS}/fuzz_ds
                  COMMAND ${CMAKE_COMMAND} -E make_directory ${MK_FUZZ_CORPUS}/fuzz_ds
                  COMMAND seedgen_ds ${MK_FUZZ_CORPUS}/fuzz_ds
                  DEPENDS seedgen_ds
                  COMMENT "Generating the fuzz_ds seed corpus")
