#include "query_string.hpp"

#include <stdexcept>

#include <boost/url/encode.hpp>
#include <boost/url/parse_query.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>
#include <boost/url/src.hpp>  // Boost.URL's compiled part: Debian ships no libboost_url
#include <fmt/format.h>

namespace stallscope::detail {

std::vector<std::pair<std::string, std::string>> query_fields(std::string_view query) {
  if (!query.empty() && query.front() == '?') query.remove_prefix(1);
  const auto parsed = boost::urls::parse_query(query);
  if (!parsed) {
    throw std::invalid_argument(fmt::format("stallscope: bad query string \"{}\": {}",
                                            query.substr(0, 200), parsed.error().message()));
  }
  boost::urls::encoding_opts opts;
  opts.space_as_plus = true;
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& p : boost::urls::params_view(boost::urls::params_view(*parsed), opts)) {
    out.emplace_back(p.key, p.value);
  }
  return out;
}

std::string query_encode(std::string_view value) {
  return boost::urls::encode(value, boost::urls::unreserved_chars);
}

std::string quoted_value(std::string_view v) {
  std::string out = "\"";
  for (const char c : v.substr(0, 64)) {
    out += static_cast<unsigned char>(c) < 0x20 || c == 0x7f ? '?' : c;
  }
  return out + (v.size() > 64 ? "...\"" : "\"");
}

}  // namespace stallscope::detail
