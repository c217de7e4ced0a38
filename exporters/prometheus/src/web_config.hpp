#pragma once
/// The endpoint's security configuration, read from a web configuration file in the format of
/// the Prometheus exporter-toolkit (the file `--web.config.file` takes in node_exporter):
///
///   tls_server_config:
///     cert_file: /etc/stallscope/server.crt
///     key_file: /etc/stallscope/server.key
///   basic_auth_users:
///     prometheus: $2y$10$...            # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':')
///
/// Private to the exporter (not installed).

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace stallscope::detail {

struct WebConfig {
  struct Tls {
    std::string cert_file;  // PEM certificate chain
    std::string key_file;   // PEM private key
  };
  struct User {
    std::string name;
    std::string bcrypt_hash;  // "$2a$", "$2b$" or "$2y$" form
  };

  /// Serve HTTPS with this certificate; nullopt: plain HTTP.
  std::optional<Tls> tls;
  /// Users allowed in with HTTP basic auth; empty: no authentication.
  std::vector<User> users;

  bool requires_auth() const noexcept { return !users.empty(); }

  /// True when no users are configured, or `authorization` (the value of the request's
  /// Authorization header, e.g. "Basic dXNlcjpwYXNz") names a configured user and the right
  /// password. Thread-safe. A bcrypt check costs milliseconds (by design); a header that has
  /// passed once is remembered (bounded), so a scraper pays it once, not every scrape.
  bool authorized(std::string_view authorization) const;
};

/// Reads a web configuration file. Throws std::invalid_argument naming the file and the bad key
/// or value (an unknown key, a missing cert_file, a hash that is not bcrypt, an unreadable
/// certificate or key file, YAML that does not parse).
WebConfig load_web_config(const std::string& path);

}  // namespace stallscope::detail
