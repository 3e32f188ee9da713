# Runs the orders demo as the README's main command does (the SQLite store, then --memory),
# and checks its exit status and summary lines, so that the demo cannot silently break.
#   cmake -DDEMO=path/to/orders -DWORK_DIR=dir -P run.cmake
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

function(run_demo expect)
  execute_process(COMMAND "${DEMO}" ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "orders ${ARGN} exited with ${rc}\n${out}\n${err}")
  endif()
  foreach(line IN LISTS expect)
    string(FIND "${out}" "${line}" at)
    if(at EQUAL -1)
      message(FATAL_ERROR "orders ${ARGN}: the output lacks \"${line}\"\n${out}")
    endif()
  endforeach()
  if(out MATCHES "SOMETHING WAS LOST")
    message(FATAL_ERROR "orders ${ARGN} says something was lost\n${out}")
  endif()
  message(STATUS "orders ${ARGN}: ok")
endfunction()

set(story "every order placed\\; email and audit saw every one\\; inventory caught up after its outage")
run_demo("3000 orders placed;${story};dead letters kept, earlier runs' included: 3 (this run published 3"
         --orders 3000 --outage-ms 150 --store "${WORK_DIR}/orders.db")
# A second run on the same store finds the first run's dead letters still there.
run_demo("events stored in ${WORK_DIR}/orders.db;dead letters kept, earlier runs' included: 3 (this run published 0" --orders 0 --store "${WORK_DIR}/orders.db")
run_demo("3000 orders placed;${story};events kept in memory" --orders 3000 --outage-ms 150 --memory)
# The README's other story: the order service and each service as its own process, on one
# store (here the SQLite file; the README shows it on NATS).
set(shared "${WORK_DIR}/processes.db")
run_demo("1000 orders placed and stored" --role orders --orders 1000 --store "${shared}")
run_demo("email sent 1000 confirmations" --role email --orders 1000 --store "${shared}")
run_demo("audit holds 1000 entries" --role audit --orders 1000 --store "${shared}")
run_demo("inventory reserved 1998 units;dead letters kept, earlier runs' included: 1 (this run published 1" --role inventory --orders 1000 --outage-ms 0
         --store "${shared}")
# The whole story counts what its own services handled, so on a store file it runs alone: held
# by another process (here flock(1) holds the lock as a service process or a whole story
# would), it refuses to start, and says why, rather than count another's orders as lost.
function(expect_refused held said)
  execute_process(COMMAND flock ${held} "${shared}" "${DEMO}" ${ARGN} TIMEOUT 60
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  string(FIND "${err}" "${said}" at)
  if(NOT rc EQUAL 2 OR at EQUAL -1)
    message(FATAL_ERROR "orders ${ARGN} beside a process holding the store (flock ${held}) exited with ${rc}, "
                        "not 2 saying \"${said}\"\n${out}\n${err}")
  endif()
  message(STATUS "orders ${ARGN}, the store held (flock ${held}): refused")
endfunction()
expect_refused(--shared "orders: another orders process serves ${shared}" --orders 10 --store "${shared}")
expect_refused(--exclusive "orders: a whole orders demo runs on ${shared}" --role email --orders 0 --store "${shared}")
# The order service takes no turn: it places orders beside anything.
execute_process(COMMAND flock --exclusive "${shared}" "${DEMO}" --role orders --orders 10 --store "${shared}"
                TIMEOUT 60 RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "orders --role orders beside a whole story exited with ${rc}\n${err}")
endif()
