# Installs the crier build in BUILD_DIR into a scratch prefix, then configures, builds (with
# compiler CXX and FLAGS, the build's sanitizer flags) and runs a consumer project that finds it
# with find_package(crier). SHARED (whether that build's libraries are shared) is only reported.
if(NOT DEFINED SHARED)
  set(SHARED OFF)
endif()
file(REMOVE_RECURSE ${WORK_DIR})
function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed (${rc}): ${ARGN}\n${out}")
  endif()
endfunction()
step(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix)
# The README's quick starts, as printed: each block follows a "<!-- quickstart: NAME" line.
file(READ ${SOURCE_DIR}/README.md readme)
foreach(name memory sqlite)
  string(REGEX MATCH "<!-- quickstart: ${name}[^\n]*\n```cpp\n(.*)" tail "${readme}")
  if(NOT tail)
    message(FATAL_ERROR "README.md has no quickstart block named ${name}")
  endif()
  string(FIND "${CMAKE_MATCH_1}" "\n```" end)
  string(SUBSTRING "${CMAKE_MATCH_1}" 0 ${end} code)
  file(WRITE ${WORK_DIR}/quickstart/quickstart_${name}.cpp "${code}\n")
endforeach()
step(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/package/consumer -B ${WORK_DIR}/consumer -G ${GENERATOR}
     -DCMAKE_CXX_COMPILER=${CXX} "-DCMAKE_CXX_FLAGS=${FLAGS}" "-DCMAKE_EXE_LINKER_FLAGS=${FLAGS}"
     -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DQUICKSTART_DIR=${WORK_DIR}/quickstart)
step(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer --parallel 2)
file(MAKE_DIRECTORY ${WORK_DIR}/run)
foreach(program consumer quickstart_memory quickstart_sqlite)
  execute_process(COMMAND ${WORK_DIR}/consumer/${program} WORKING_DIRECTORY ${WORK_DIR}/run
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${program} failed (${rc}):\n${out}")
  endif()
  message(STATUS "${program}: ${out}")
endforeach()
message(STATUS "consumer and README quick starts built against the installed crier (shared: ${SHARED}, strict "
               "warnings) and ran")
