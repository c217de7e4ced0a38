#pragma once
// Query strings of the endpoint's pages, read and written with Boost.URL (libboost1.81-dev's
// headers; its compiled part is built into query_string.cpp).
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace stallscope::detail {

// The fields of `query` ("a=1&b=x%2Fy", with or without its leading '?'), in order, keys and
// values percent-decoded and '+' read as a space; a key without '=' has the value "". Throws
// std::invalid_argument naming the query when it is not a valid one (a bad percent escape).
std::vector<std::pair<std::string, std::string>> query_fields(std::string_view query);

// `value` percent-encoded for a query string: everything but RFC 3986's unreserved characters.
std::string query_encode(std::string_view value);

// A bad parameter value for an error message: quoted, cut to 64 characters, control characters
// shown as '?'.
std::string quoted_value(std::string_view v);

}  // namespace stallscope::detail
