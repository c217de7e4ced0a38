#pragma once
// Escapes text for an HTML or XML text node or quoted attribute: the /stallz page
// (stallz_html.cpp) and stallscope-check's JUnit report (exporters/check). Not API.
#include <string>
#include <string_view>

namespace stallscope::detail {

// Appends `s` to `out` with & < > " ' as character references. Control characters other than
// tab, newline and carriage return (which neither XML 1.0 nor HTML allows) become spaces.
inline void markup_escape(std::string& out, std::string_view s) {
  for (const char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r') {
          out += ' ';
        } else {
          out += c;
        }
    }
  }
}

// An HTML page being written: raw markup as it is, text escaped; calls chain.
class MarkupWriter {
 public:
  std::string& out() { return out_; }
  MarkupWriter& raw(std::string_view s) {
    out_ += s;
    return *this;
  }
  MarkupWriter& text(std::string_view s) {
    markup_escape(out_, s);
    return *this;
  }

 protected:
  std::string out_;
};

}  // namespace stallscope::detail
