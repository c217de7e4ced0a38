// Must not compile: a constinit lock with a bad literal name (a space). The test that compiles
// it (tests/instrumented/CMakeLists.txt) passes only if the error names the check.
#include "stallscope/mutex.hpp"

constinit stallscope::Mutex registry{"bad name"};
