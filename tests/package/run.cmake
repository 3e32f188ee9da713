# Installs crier from SOURCE_DIR into a scratch prefix, then configures, builds and runs a
# consumer project that finds it with find_package(crier).
file(REMOVE_RECURSE ${WORK_DIR})
function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed (${rc}): ${ARGN}\n${out}")
  endif()
endfunction()
step(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/crier -G ${GENERATOR}
     -DCMAKE_BUILD_TYPE=Release -DCRIER_BUILD_TESTS=OFF -DCRIER_BUILD_BENCHMARKS=OFF
     -DCRIER_BUILD_EXAMPLES=OFF -DCMAKE_INSTALL_PREFIX=${WORK_DIR}/prefix)
step(${CMAKE_COMMAND} --build ${WORK_DIR}/crier --parallel 2)
step(${CMAKE_COMMAND} --install ${WORK_DIR}/crier)
step(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/package/consumer -B ${WORK_DIR}/consumer -G ${GENERATOR}
     -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
step(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer)
step(${WORK_DIR}/consumer/consumer)
message(STATUS "consumer built against the installed crier and ran")
