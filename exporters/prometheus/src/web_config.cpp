#include "web_config.hpp"

#include <crypt.h>

#include <cctype>
#include <cstddef>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <yaml-cpp/yaml.h>

namespace stallscope::detail {

namespace {

namespace fs = std::filesystem;

std::invalid_argument bad(const std::string& path, std::string_view what) {
  return std::invalid_argument(fmt::format("stallscope: web config \"{}\": {}", path, what));
}

// The exporter-toolkit keys stallscope does not implement. Refusing them, rather than ignoring
// them, keeps a file written for node_exporter from silently losing a security setting (client
// certificate checks, protocol versions) it asked for.
constexpr std::string_view kUnsupportedTls[] = {
    "client_auth_type",
    "client_ca_file",
    "client_allowed_sans",
    "cipher_suites",
    "curve_preferences",
    "min_version",
    "max_version",
    "prefer_server_cipher_suites",
    "cert",
    "key",
};

bool is_bcrypt(std::string_view h) {
  // $2a$, $2b$ or $2y$, a two-digit cost, '$', 53 characters of salt and hash.
  return h.size() == 60 && h[0] == '$' && h[1] == '2' &&
         (h[2] == 'a' || h[2] == 'b' || h[2] == 'y') && h[3] == '$' && h[4] >= '0' && h[4] <= '3' &&
         h[5] >= '0' && h[5] <= '9' && h[6] == '$';
}

// A path in the file is relative to the file's own folder (as in the exporter-toolkit).
std::string resolve(const std::string& config_path, const std::string& file) {
  const fs::path p(file);
  if (p.is_absolute()) return file;
  return (fs::path(config_path).parent_path() / p).string();
}

void require_readable(const std::string& config_path, std::string_view key,
                      const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in || in.peek() == std::ifstream::traits_type::eof()) {
    throw bad(config_path,
              fmt::format("tls_server_config.{} \"{}\" cannot be read or is empty", key, file));
  }
}

std::string scalar(const std::string& path, const YAML::Node& node, std::string_view key) {
  if (!node.IsScalar()) throw bad(path, fmt::format("{} must be a string", key));
  return node.as<std::string>();
}

WebConfig::Tls read_tls(const std::string& path, const YAML::Node& node) {
  if (!node.IsMap()) throw bad(path, "tls_server_config must be a mapping");
  WebConfig::Tls tls;
  for (const auto& kv : node) {
    const std::string key = kv.first.as<std::string>();
    if (key == "cert_file") {
      tls.cert_file = resolve(path, scalar(path, kv.second, "tls_server_config.cert_file"));
    } else if (key == "key_file") {
      tls.key_file = resolve(path, scalar(path, kv.second, "tls_server_config.key_file"));
    } else {
      for (std::string_view u : kUnsupportedTls) {
        if (key == u) {
          throw bad(path, fmt::format("tls_server_config.{} is not supported by stallscope "
                                      "(supported: cert_file, key_file)",
                                      key));
        }
      }
      throw bad(path, fmt::format("unknown key tls_server_config.{}", key));
    }
  }
  if (tls.cert_file.empty()) throw bad(path, "tls_server_config has no cert_file");
  if (tls.key_file.empty()) throw bad(path, "tls_server_config has no key_file");
  require_readable(path, "cert_file", tls.cert_file);
  require_readable(path, "key_file", tls.key_file);
  return tls;
}

std::vector<WebConfig::User> read_users(const std::string& path, const YAML::Node& node) {
  if (node.IsNull()) return {};
  if (!node.IsMap()) throw bad(path, "basic_auth_users must be a mapping of user: bcrypt hash");
  std::vector<WebConfig::User> users;
  for (const auto& kv : node) {
    WebConfig::User u{kv.first.as<std::string>(),
                      scalar(path, kv.second, "basic_auth_users." + kv.first.as<std::string>())};
    if (u.name.empty() || u.name.find(':') != std::string::npos) {
      throw bad(path,
                fmt::format("basic_auth_users: user name \"{}\" is empty or has a ':'", u.name));
    }
    if (!is_bcrypt(u.bcrypt_hash)) {
      // The hash is a secret of sorts: name the user, show only its start.
      throw bad(path, fmt::format("basic_auth_users.{}: \"{}...\" is not a bcrypt hash ($2a$, "
                                  "$2b$ or $2y$, 60 characters; htpasswd -nBC 10 USER)",
                                  u.name, u.bcrypt_hash.substr(0, 4)));
    }
    users.push_back(std::move(u));
  }
  return users;
}

// Headers that passed a bcrypt check, keyed with the hash they passed against (so a changed
// password hash never matches an old entry). Bounded: the oldest entry goes first.
class AuthCache {
 public:
  bool contains(const std::string& key) {
    std::lock_guard lock(mu_);
    for (const std::string& k : keys_) {
      if (k.size() == key.size() && CRYPTO_memcmp(k.data(), key.data(), k.size()) == 0) {
        return true;
      }
    }
    return false;
  }
  void add(std::string key) {
    std::lock_guard lock(mu_);
    if (keys_.size() == kMax) keys_.pop_front();
    keys_.push_back(std::move(key));
  }

 private:
  static constexpr std::size_t kMax = 64;
  std::mutex mu_;
  std::deque<std::string> keys_;
};

AuthCache& auth_cache() {
  static auto* const c = new AuthCache;  // leaked: an Agent may serve during static destruction
  return *c;
}

bool bcrypt_matches(const std::string& password, const std::string& hash) {
  crypt_data data{};
  const char* out = crypt_rn(password.c_str(), hash.c_str(), &data, sizeof data);
  return out != nullptr && out[0] != '*' && std::string_view(out).size() == hash.size() &&
         CRYPTO_memcmp(out, hash.data(), hash.size()) == 0;
}

// "user:password" from "Basic <base64>", nullopt when it is not that.
std::optional<std::string> basic_credentials(std::string_view header) {
  constexpr std::string_view kScheme = "basic ";
  if (header.size() <= kScheme.size()) return std::nullopt;
  for (std::size_t i = 0; i < kScheme.size(); ++i) {
    if (static_cast<char>(std::tolower(static_cast<unsigned char>(header[i]))) != kScheme[i]) {
      return std::nullopt;
    }
  }
  std::string_view b64 = header.substr(kScheme.size());
  while (!b64.empty() && b64.front() == ' ') b64.remove_prefix(1);
  while (!b64.empty() && b64.back() == ' ') b64.remove_suffix(1);
  if (b64.empty() || b64.size() % 4 != 0 || b64.size() > 4096) return std::nullopt;
  std::string out(b64.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(b64.data()),
                                static_cast<int>(b64.size()));
  if (n < 0) return std::nullopt;
  // EVP_DecodeBlock counts the bytes that '=' padding stands for; drop them.
  std::size_t len = static_cast<std::size_t>(n);
  if (b64.ends_with("==")) {
    len -= 2;
  } else if (b64.ends_with("=")) {
    len -= 1;
  }
  out.resize(len);
  return out;
}

// A well-formed bcrypt hash of nothing anyone types, checked when the user is unknown so an
// unknown user costs the same time as a wrong password.
constexpr const char* kDummyHash = "$2y$10$QIdDeMIxWfzAJqkFb4C70.bWFW25n4MS1qZa6Q1JZl.4Nml5pdsMG";

}  // namespace

bool WebConfig::authorized(std::string_view authorization) const {
  if (users.empty()) return true;
  const std::optional<std::string> cred = basic_credentials(authorization);
  if (!cred) return false;
  const std::size_t colon = cred->find(':');
  if (colon == std::string::npos) return false;
  const std::string name = cred->substr(0, colon);
  const std::string password = cred->substr(colon + 1);
  const User* user = nullptr;
  for (const User& u : users) {
    if (u.name == name) user = &u;
  }
  if (user == nullptr) {
    (void)bcrypt_matches(password, kDummyHash);
    return false;
  }
  std::string key = user->bcrypt_hash;
  key += '\n';
  key += authorization;
  if (auth_cache().contains(key)) return true;
  if (!bcrypt_matches(password, user->bcrypt_hash)) return false;
  auth_cache().add(std::move(key));
  return true;
}

WebConfig load_web_config(const std::string& path) {
  YAML::Node root;
  {
    std::ifstream in(path);
    if (!in) throw bad(path, "cannot be read");
    try {
      root = YAML::Load(in);
    } catch (const YAML::Exception& e) {
      throw bad(path, fmt::format("is not valid YAML: {}", e.what()));
    }
  }
  WebConfig config;
  if (root.IsNull()) return config;  // an empty file: nothing to enforce, as in the toolkit
  if (!root.IsMap()) throw bad(path, "the top level must be a mapping");
  for (const auto& kv : root) {
    const std::string key = kv.first.as<std::string>();
    if (key == "tls_server_config") {
      config.tls = read_tls(path, kv.second);
    } else if (key == "basic_auth_users") {
      config.users = read_users(path, kv.second);
    } else if (key == "http_server_config") {
      throw bad(path, "http_server_config is not supported by stallscope");
    } else {
      throw bad(path, fmt::format("unknown key \"{}\" (known: tls_server_config, "
                                  "basic_auth_users)",
                                  key));
    }
  }
  return config;
}

}  // namespace stallscope::detail
