// Boost.JSON's implementation, compiled once here: Debian's Boost 1.81 has the headers but this
// project installs no libboost_json, and the header-only mode needs exactly one such unit.
#include <boost/json/src.hpp>
