#include "crier/envelope.hpp"

#include <algorithm>
#include <ctime>

#include <nlohmann/json.hpp>

#include "crier/error.hpp"
#include "crier/event.hpp"

#include "common/utf8.hpp"

namespace crier {

namespace {

constexpr std::string_view kCoreAttributes[] = {"specversion", "id",      "source", "type", "datacontenttype",
                                                "dataschema",  "subject", "time",   "data", "data_base64"};

// CloudEvents: extension names are lower-case letters and digits, at most 20 characters.
bool valid_extension_name(std::string_view name) {
  if (name.empty() || name.size() > 20) return false;
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) return false;
  for (auto core : kCoreAttributes)
    if (name == core) return false;
  return true;
}

bool is_json_content(std::string_view type) {
  return type.empty() || type.starts_with("application/json") || type.find("+json") != std::string_view::npos ||
         type.starts_with("text/json");
}

constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const unsigned v = static_cast<unsigned char>(in[i]) << 16 | static_cast<unsigned char>(in[i + 1]) << 8 |
                       static_cast<unsigned char>(in[i + 2]);
    out += {kB64[v >> 18], kB64[(v >> 12) & 63], kB64[(v >> 6) & 63], kB64[v & 63]};
  }
  if (i < in.size()) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    out += {kB64[v >> 18], kB64[(v >> 12) & 63], i + 1 < in.size() ? kB64[(v >> 6) & 63] : '=', '='};
  }
  return out;
}

std::string base64_decode(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  if (in.size() % 4 != 0) throw Error(Errc::invalid_envelope, "data_base64: length is not a multiple of 4");
  std::string out;
  for (std::size_t i = 0; i < in.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      if (in[i + k] == '=' && i + 4 == in.size() && k >= 2) {
        v[k] = 0;
        ++pad;
      } else if ((v[k] = value(in[i + k])) < 0 || pad) {
        throw Error(Errc::invalid_envelope, "data_base64: invalid character at offset " + std::to_string(i + k));
      }
    }
    const unsigned n = v[0] << 18 | v[1] << 12 | v[2] << 6 | v[3];
    out.push_back(static_cast<char>(n >> 16));
    if (pad < 2) out.push_back(static_cast<char>(n >> 8));
    if (pad < 1) out.push_back(static_cast<char>(n));
  }
  return out;
}

bool lower_hex(std::string_view s) noexcept {
  return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// W3C Trace Context, version 00 and later versions' leading fields:
// version "-" trace-id "-" parent-id "-" trace-flags, lower-case hex, ids not all zero.
bool valid_traceparent(std::string_view v) noexcept {
  if (v.size() < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-') return false;
  const std::string_view version = v.substr(0, 2), trace = v.substr(3, 32), parent = v.substr(36, 16),
                         flags = v.substr(53, 2);
  if (!lower_hex(version) || version == "ff" || !lower_hex(trace) || !lower_hex(parent) || !lower_hex(flags))
    return false;
  if (trace.find_first_not_of('0') == std::string_view::npos || parent.find_first_not_of('0') == std::string_view::npos)
    return false;
  if (version == "00") return v.size() == 55;
  return v.size() == 55 || v[55] == '-';  // a later version may append fields
}

// W3C tracestate: up to 32 comma-separated key=value members, at most 512 characters.
bool valid_tracestate(std::string_view v) noexcept {
  if (v.size() > 512) return false;
  int members = 0;
  while (!v.empty()) {
    const std::size_t comma = v.find(',');
    std::string_view member = v.substr(0, comma);
    v = comma == std::string_view::npos ? std::string_view() : v.substr(comma + 1);
    while (!member.empty() && (member.front() == ' ' || member.front() == '\t')) member.remove_prefix(1);
    while (!member.empty() && (member.back() == ' ' || member.back() == '\t')) member.remove_suffix(1);
    if (member.empty()) continue;  // empty members are allowed and ignored
    const std::size_t eq = member.find('=');
    if (eq == 0 || eq == std::string_view::npos || eq > 256 || ++members > 32) return false;
    for (char c : member.substr(0, eq))
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '*' || c == '/' ||
            c == '@'))
        return false;
    const std::string_view value = member.substr(eq + 1);
    if (value.empty() || value.size() > 256) return false;
    for (char c : value)
      if (c < 0x20 || c > 0x7e || c == ',' || c == '=') return false;
  }
  return true;
}

}  // namespace

void validate(const Attributes& a) {
  // CloudEvents strings are Unicode: refused here, on every bus, rather than by the one
  // transport or tool that writes them as JSON.
  auto utf8 = [](std::string_view what, std::string_view value) {
    if (auto problem = detail::utf8_problem(value); !problem.empty())
      throw Error(Errc::invalid_argument, std::string(what) + " " + problem);
  };
  utf8("subject", a.subject);
  utf8("partition_key", a.partition_key);
  utf8("dataschema", a.dataschema);
  for (const auto& [name, value] : a.extensions) {
    if (!valid_extension_name(name))
      throw Error(Errc::invalid_name, "extension attribute name " + detail::quoted_name(name) +
                                          " (want 1-20 characters of [a-z0-9], not a core attribute name)");
    if (auto problem = detail::utf8_problem(value); !problem.empty())
      throw Error(Errc::invalid_argument, "extension attribute '" + name + "' " + problem);
    if (name == "traceparent" && !valid_traceparent(value))
      throw Error(Errc::invalid_argument,
                  "traceparent " + detail::quoted_name(value, 80) +
                      " is not a W3C trace context (want 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>, "
                      "lower case, ids not all zero)");
    if (name == "tracestate" && !valid_tracestate(value))
      throw Error(Errc::invalid_argument, "tracestate " + detail::quoted_name(value, 80) +
                                              " is not a W3C tracestate (want up to 32 key=value members, "
                                              "comma-separated, at most 512 characters)");
  }
}

std::string format_time(Timestamp t) {
  // floor, not duration_cast: before 1970 the latter rounds up to the next microsecond.
  const auto us = std::chrono::floor<std::chrono::microseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(us / 1000000);
  long frac = static_cast<long>(us % 1000000);
  if (frac < 0) {
    frac += 1000000;
    --secs;
  }
  std::tm tm{};
  gmtime_r(&secs, &tm);
  const int year = tm.tm_year + 1900;
  if (year < 0 || year > 9999) {
    char buf[80];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", year, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                  tm.tm_min, tm.tm_sec, frac);
    return buf;
  }
  // Every durable publish formats a time: digits by hand, not through printf.
  std::string out = "0000-00-00T00:00:00.000000Z";
  auto put = [&](std::size_t pos, long v, int width) {
    for (int i = width - 1; i >= 0; --i, v /= 10)
      out[pos + static_cast<std::size_t>(i)] = static_cast<char>('0' + v % 10);
  };
  put(0, year, 4);
  put(5, tm.tm_mon + 1, 2);
  put(8, tm.tm_mday, 2);
  put(11, tm.tm_hour, 2);
  put(14, tm.tm_min, 2);
  put(17, tm.tm_sec, 2);
  put(20, frac, 6);
  return out;
}

Timestamp parse_time(std::string_view s) {
  auto fail = [&](const char* why) {
    return Error(Errc::invalid_argument, "not an RFC 3339 time (" + std::string(why) + "): '" + std::string(s) + "'");
  };
  auto digits = [&](std::size_t pos, std::size_t n) {
    if (pos + n > s.size()) throw fail("too short");
    int v = 0;
    for (std::size_t i = pos; i < pos + n; ++i) {
      if (s[i] < '0' || s[i] > '9') throw fail("digit expected");
      v = v * 10 + (s[i] - '0');
    }
    return v;
  };
  auto expect = [&](std::size_t pos, std::string_view chars) {
    if (pos >= s.size() || chars.find(s[pos]) == std::string_view::npos) throw fail("separator expected");
  };
  std::tm tm{};
  tm.tm_year = digits(0, 4) - 1900;
  expect(4, "-");
  tm.tm_mon = digits(5, 2) - 1;
  expect(7, "-");
  tm.tm_mday = digits(8, 2);
  expect(10, "Tt ");
  tm.tm_hour = digits(11, 2);
  expect(13, ":");
  tm.tm_min = digits(14, 2);
  expect(16, ":");
  tm.tm_sec = digits(17, 2);
  if (tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
    throw fail("field out of range");
  std::size_t pos = 19;
  long long nanos = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    int n = 0;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      if (n < 9) nanos = nanos * 10 + (s[pos] - '0'), ++n;
      ++pos;
    }
    if (n == 0) throw fail("empty fraction");
    for (; n < 9; ++n) nanos *= 10;
  }
  long offset = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    const int sign = s[pos] == '-' ? -1 : 1;
    const int h = digits(pos + 1, 2);
    expect(pos + 3, ":");
    const int m = digits(pos + 4, 2);
    offset = sign * (h * 3600L + m * 60L);
    pos += 6;
  } else {
    throw fail("time zone expected");
  }
  if (pos != s.size()) throw fail("trailing characters");
  // A Timestamp counts nanoseconds in 64 bits: 1677-09-21 to 2262-04-11. Outside, refuse
  // instead of wrapping around.
  constexpr auto kMax = std::chrono::duration_cast<std::chrono::seconds>(Timestamp::duration::max()).count() - 1;
  constexpr auto kMin = std::chrono::duration_cast<std::chrono::seconds>(Timestamp::duration::min()).count() + 1;
  // timegm()'s arithmetic without its time-zone lock: a day past the month's end (31 Feb)
  // rolls over into the next month as it does there.
  const auto days = std::chrono::sys_days(std::chrono::year(tm.tm_year + 1900) /
                                          std::chrono::month(static_cast<unsigned>(tm.tm_mon + 1)) / 1) +
                    std::chrono::days(tm.tm_mday - 1);
  const long long secs = static_cast<long long>(days.time_since_epoch().count()) * 86400 + tm.tm_hour * 3600LL +
                         tm.tm_min * 60LL + tm.tm_sec - offset;
  if (secs > kMax || secs < kMin) throw fail("outside the representable range, 1677-09-22 to 2262-04-11");
  return Timestamp(
      std::chrono::duration_cast<Timestamp::duration>(std::chrono::seconds(secs) + std::chrono::nanoseconds(nanos)));
}

void Envelope::validate() const {
  auto fail = [&](const std::string& why) {
    const bool show_id = !id.empty() && detail::invalid_utf8_at(id) == std::string_view::npos;
    return Error(Errc::invalid_envelope, why + (show_id ? " (event id " + id + ")" : std::string()));
  };
  if (specversion != "1.0") throw fail("specversion is '" + specversion + "', want '1.0'");
  if (id.empty()) throw fail("id is missing");
  if (source.empty()) throw fail("source is missing");
  if (type.empty()) throw fail("type is missing");
  if (!time.empty()) {
    try {
      parse_time(time);
    } catch (const Error& e) {
      throw fail("time: " + e.message());
    }
  }
  // A media type (RFC 2046) has no control characters; NATS and HTTP carry it as a header
  // as it is, where a line end or NUL would cut it short or add a header of its own.
  for (const char ch : datacontenttype)
    if (const auto c = static_cast<unsigned char>(ch); c < 0x20 || c == 0x7F)
      throw fail("datacontenttype has a control character (byte " + std::to_string(c) + ")");
  // CloudEvents strings are Unicode: bytes that are not UTF-8 make no CloudEvent.
  auto utf8 = [&](std::string_view what, std::string_view value) {
    if (auto problem = detail::utf8_problem(value); !problem.empty()) throw fail(std::string(what) + " " + problem);
  };
  utf8("id", id);
  utf8("source", source);
  utf8("type", type);
  utf8("datacontenttype", datacontenttype);
  utf8("dataschema", dataschema);
  utf8("subject", subject);
  for (const auto& [name, value] : extensions) {
    if (!valid_extension_name(name)) throw fail("extension attribute name '" + name + "' is invalid");
    if (auto problem = detail::utf8_problem(value); !problem.empty())
      throw fail("extension attribute '" + name + "' " + problem);
  }
}

std::string Envelope::to_json() const {
  nlohmann::ordered_json j;
  j["specversion"] = specversion;
  j["id"] = id;
  j["source"] = source;
  j["type"] = type;
  if (!datacontenttype.empty()) j["datacontenttype"] = datacontenttype;
  if (!dataschema.empty()) j["dataschema"] = dataschema;
  if (!subject.empty()) j["subject"] = subject;
  if (!time.empty()) j["time"] = time;
  for (const auto& [name, value] : extensions) j[name] = value;
  if (!data.empty()) {
    // JSON data is embedded as a value; anything else (other content, or bytes that are not
    // JSON although the content type says so) travels as base64, byte for byte.
    auto parsed = is_json_content(datacontenttype) ? nlohmann::ordered_json::parse(data, nullptr, false)
                                                   : nlohmann::ordered_json(nlohmann::ordered_json::value_t::discarded);
    if (!parsed.is_discarded())
      j["data"] = std::move(parsed);
    else
      j["data_base64"] = base64_encode(data);
  }
  // What validate() refuses may still be shown (an event stored before, a dead letter): bytes
  // that are not UTF-8 become U+FFFD rather than an exception.
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

Envelope Envelope::from_json(std::string_view text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) throw Error(Errc::invalid_envelope, "not valid JSON");
  if (!j.is_object()) throw Error(Errc::invalid_envelope, "a CloudEvent in JSON must be an object");
  Envelope e;
  e.specversion.clear();
  // (A datacontenttype that is not a string is refused below, as every core attribute.)
  const auto content_type = j.find("datacontenttype");
  const bool json_data = content_type == j.end() || !content_type->is_string() ||
                         is_json_content(content_type->get_ref<const std::string&>());
  std::string* fields[] = {&e.specversion,     &e.id,         &e.source,  &e.type,
                           &e.datacontenttype, &e.dataschema, &e.subject, &e.time};
  for (auto& [key, value] : j.items()) {
    std::size_t k = 0;
    for (; k < 8; ++k)
      if (key == kCoreAttributes[k]) break;
    if (k < 8) {
      if (!value.is_string()) throw Error(Errc::invalid_envelope, "attribute '" + key + "' must be a string");
      *fields[k] = value.get<std::string>();
    } else if (key == "data") {
      e.data = value.is_string() && !json_data ? value.get<std::string>() : value.dump();
    } else if (key == "data_base64") {
      if (!value.is_string()) throw Error(Errc::invalid_envelope, "data_base64 must be a string");
      e.data = base64_decode(value.get<std::string>());
    } else if (value.is_string()) {
      e.extensions[key] = value.get<std::string>();
    } else if (value.is_number() || value.is_boolean()) {
      e.extensions[key] = value.dump();
    } else {
      throw Error(Errc::invalid_envelope, "extension attribute '" + key + "' must be a string, number or boolean");
    }
  }
  if (j.contains("data") && j.contains("data_base64"))
    throw Error(Errc::invalid_envelope, "both data and data_base64 are present");
  e.validate();
  return e;
}

}  // namespace crier
