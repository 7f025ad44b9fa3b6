// lapps-bench-client: a closed-loop WebSocket load client on websocketpp (Boost.Asio), for
// measuring LAppS (or any echo server) without the client being the bottleneck.
//
//   lapps-bench-client --url ws://127.0.0.1:PORT/PATH [--connections 80] [--size 277]
//                      [--seconds 10] [--warmup 1] [--binary] [--processes 1] [--ca FILE]
//                      [--lapps] [--verbose]
//
// Each connection sends one message, waits for its echo, verifies it byte for byte, and sends
// the next. One thread and one io_service per process; `--processes P` forks P copies with
// N/P connections each and sums their results (pipes). Prints exactly one RESULT line on
// stdout; exit status 0 when errors == 0, 1 otherwise, 2 for a usage error (no RESULT line).
// See README.md beside this file.

#include <websocketpp/config/asio_client.hpp>
#include <websocketpp/client.hpp>
#include <websocketpp/concurrency/none.hpp>

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <unistd.h>
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;   // CLOCK_MONOTONIC: the same clock in every process

// ------------------------------------------------------------------------------ options

struct Options {
    std::string url;
    int connections = 80;
    long size = 277;
    double seconds = 10;
    double warmup = 1;
    bool binary = false;
    int processes = 1;
    std::string ca;
    bool lapps = false;
    bool verbose = false;
};

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr,
        "lapps-bench-client: %s\n"
        "usage: lapps-bench-client --url ws[s]://HOST:PORT/PATH [--connections 80] [--size 277]\n"
        "                          [--seconds 10] [--warmup 1] [--binary] [--processes 1]\n"
        "                          [--ca FILE] [--lapps] [--verbose]\n", why);
    std::exit(2);
}

Options parse_args(int argc, char** argv) {
    Options o;
    auto need = [&](int& i) -> const char* {
        if (i + 1 >= argc) usage((std::string(argv[i]) + " needs a value").c_str());
        return argv[++i];
    };
    auto num = [&](const char* name, const char* v, double lo, double hi) -> double {
        char* end = nullptr;
        errno = 0;
        double d = std::strtod(v, &end);
        if (errno || end == v || *end || !(d >= lo && d <= hi)) {
            char buf[256];
            std::snprintf(buf, sizeof buf, "%s: expected a number in [%.10g, %.10g], got '%s'", name, lo, hi, v);
            usage(buf);
        }
        return d;
    };
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--url") o.url = need(i);
        else if (a == "--connections") o.connections = (int)num("--connections", need(i), 1, 100000);
        else if (a == "--size") o.size = (long)num("--size", need(i), 0, 16 * 1024 * 1024);
        else if (a == "--seconds") o.seconds = num("--seconds", need(i), 0.001, 86400);
        else if (a == "--warmup") o.warmup = num("--warmup", need(i), 0, 86400);
        else if (a == "--processes") o.processes = (int)num("--processes", need(i), 1, 256);
        else if (a == "--ca") o.ca = need(i);
        else if (a == "--binary") o.binary = true;
        else if (a == "--lapps") o.lapps = true;
        else if (a == "--verbose" || a == "-v") o.verbose = true;
        else if (a == "--help" || a == "-h") usage("help");
        else usage(("unknown argument '" + a + "'").c_str());
    }
    if (o.url.empty()) usage("--url is required");
    if (o.url.rfind("ws://", 0) != 0 && o.url.rfind("wss://", 0) != 0)
        usage("--url must start with ws:// or wss://");
    if (o.url.rfind("wss://", 0) == 0 && o.ca.empty())
        usage("wss:// needs --ca FILE (the CA that signed the server's certificate, e.g. "
              "etc/ssl/ca.crt from `make certs`); refusing to connect without verifying the server");
    if (!o.ca.empty() && access(o.ca.c_str(), R_OK) != 0)
        usage(("--ca: cannot read '" + o.ca + "': " + std::strerror(errno)).c_str());
    if (o.binary && o.lapps) usage("--binary and --lapps exclude each other (LAppS requests are always binary CBOR)");
    if (o.processes > o.connections) usage("--processes must not exceed --connections");
    return o;
}

// ------------------------------------------------------------------------------ histogram

// Log-linear histogram of microseconds: exact below 2048 us, then 1024 sub-buckets per power
// of two (relative error < 0.1%). Bucket value reported: the bucket's lower bound.
struct Histogram {
    static constexpr int kSub = 1024, kLinear = 2048, kMaxExp = 44;
    static constexpr int kSize = kLinear + (kMaxExp - 11 + 1) * kSub;
    std::vector<uint64_t> counts = std::vector<uint64_t>(kSize, 0);
    uint64_t total = 0;

    static int index(uint64_t v) {
        if (v < (uint64_t)kLinear) return (int)v;
        int e = 63 - __builtin_clzll(v);
        if (e > kMaxExp) return kSize - 1;
        int shift = e - 10;
        return kLinear + (e - 11) * kSub + (int)((v >> shift) - kSub);
    }
    static uint64_t value(int idx) {
        if (idx < kLinear) return (uint64_t)idx;
        int e = (idx - kLinear) / kSub + 11;
        uint64_t sub = (uint64_t)((idx - kLinear) % kSub + kSub);
        return sub << (e - 10);
    }
    void add(uint64_t us) { ++counts[index(us)]; ++total; }
    uint64_t percentile(double p) const {
        if (total == 0) return 0;
        uint64_t rank = (uint64_t)(p / 100.0 * (double)total + 0.999999999);
        if (rank < 1) rank = 1;
        uint64_t seen = 0;
        for (int i = 0; i < kSize; ++i) {
            seen += counts[i];
            if (seen >= rank) return value(i);
        }
        return value(kSize - 1);
    }
};

// ------------------------------------------------------------------------------ payloads

// The LAppS request, encoded by hand (RFC 8949), a map of three pairs:
//   A3                          map(3)
//   65 6C 61 70 70 73           "lapps"
//   01                          1
//   66 6D 65 74 68 6F 64        "method"
//   64 65 63 68 6F              "echo"
//   66 70 61 72 61 6D 73        "params"
//   81                          array(1)
//   <text header> <text>        text(n): 60+n (n < 24), 78 n (< 256), 79 nn (< 65536),
//                               7A nnnn (< 2^32), big-endian
std::string lapps_request_prefix(size_t n) {
    static const unsigned char fixed[] = {
        0xA3,
        0x65, 'l', 'a', 'p', 'p', 's', 0x01,
        0x66, 'm', 'e', 't', 'h', 'o', 'd', 0x64, 'e', 'c', 'h', 'o',
        0x66, 'p', 'a', 'r', 'a', 'm', 's', 0x81,
    };
    std::string s(reinterpret_cast<const char*>(fixed), sizeof fixed);
    if (n < 24) {
        s.push_back((char)(0x60 + n));
    } else if (n < 256) {
        s.push_back((char)0x78); s.push_back((char)n);
    } else if (n < 65536) {
        s.push_back((char)0x79); s.push_back((char)(n >> 8)); s.push_back((char)n);
    } else {
        s.push_back((char)0x7A);
        for (int k = 3; k >= 0; --k) s.push_back((char)(n >> (8 * k)));
    }
    return s;
}

// A minimal CBOR reader, enough for the LAppS response {cid: 0, status: 1, result: [text, ...]}
// (any key order, other keys skipped; definite lengths only; no tags).
struct Cbor {
    const unsigned char* p;
    const unsigned char* end;
    int depth = 0;

    // Reads an item head: major type and argument. false on truncation / unsupported.
    bool head(int& major, uint64_t& arg) {
        if (p >= end) return false;
        unsigned b = *p++;
        major = (int)(b >> 5);
        unsigned info = b & 31;
        if (info < 24) { arg = info; return true; }
        int len = info == 24 ? 1 : info == 25 ? 2 : info == 26 ? 4 : info == 27 ? 8 : 0;
        if (len == 0 || end - p < len) return false;   // 28-30 reserved, 31 indefinite: refused
        arg = 0;
        for (int k = 0; k < len; ++k) arg = (arg << 8) | *p++;
        return true;
    }
    bool skip() {
        int major; uint64_t arg;
        if (!head(major, arg)) return false;
        switch (major) {
        case 0: case 1: case 7: return true;           // ints, simple values, floats (arg consumed)
        case 2: case 3:
            if ((uint64_t)(end - p) < arg) return false;
            p += arg; return true;
        case 4: case 5: {
            if (++depth > 32) return false;
            uint64_t items = major == 5 ? arg * 2 : arg;
            for (uint64_t k = 0; k < items; ++k) if (!skip()) return false;
            --depth; return true;
        }
        default: return false;                          // tags (6): not expected here
        }
    }
    bool text(const unsigned char*& s, uint64_t& n) {
        int major;
        if (!head(major, n) || major != 3 || (uint64_t)(end - p) < n) return false;
        s = p; p += n; return true;
    }
};

// True when `msg` is a map with cid 0, status 1 and a `result` array whose first element is
// the text `want` (length `n`).
bool lapps_response_ok(const std::string& msg, const char* want, size_t n) {
    Cbor c{reinterpret_cast<const unsigned char*>(msg.data()),
           reinterpret_cast<const unsigned char*>(msg.data()) + msg.size()};
    int major; uint64_t pairs;
    if (!c.head(major, pairs) || major != 5) return false;
    bool cid_ok = false, status_ok = false, result_ok = false;
    for (uint64_t k = 0; k < pairs; ++k) {
        const unsigned char* key; uint64_t klen;
        if (!c.text(key, klen)) return false;
        auto is = [&](const char* name) { return klen == std::strlen(name) && std::memcmp(key, name, klen) == 0; };
        if (is("cid") || is("status")) {
            int m; uint64_t v;
            if (!c.head(m, v) || m != 0) return false;
            if (is("cid")) cid_ok = v == 0; else status_ok = v == 1;
        } else if (is("result")) {
            int m; uint64_t items;
            if (!c.head(m, items) || m != 4 || items < 1) return false;
            const unsigned char* s; uint64_t slen;
            if (!c.text(s, slen)) return false;
            result_ok = slen == n && std::memcmp(s, want, n) == 0;
            for (uint64_t j = 1; j < items; ++j) if (!c.skip()) return false;
        } else if (!c.skip()) {
            return false;
        }
    }
    return c.p == c.end && cid_ok && status_ok && result_ok;
}

// xorshift64*: payload bytes and WebSocket masks (a benchmark needs speed, not secrecy).
struct Rng {
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed ? seed : 0x9E3779B97F4A7C15ull) {}
    uint64_t next() { s ^= s >> 12; s ^= s << 25; s ^= s >> 27; return s * 2685821657736338717ull; }
};

uint64_t seed_from_os() {
    std::random_device rd;
    return ((uint64_t)rd() << 32) ^ rd() ^ ((uint64_t)getpid() << 16);
}

// ------------------------------------------------------------------------------ websocketpp config

// websocketpp's mask generator: per-process xorshift instead of std::random_device (which costs
// a lock and possibly a syscall per frame).
struct MaskRng {
    typedef uint32_t result_type;
    Rng r{seed_from_os()};
    uint32_t operator()() { return (uint32_t)(r.next() >> 32); }
};

// Single-threaded configs: no locks (concurrency::none), no strands (enable_multithreading false).
template <typename SocketType>
struct FastConfig : public websocketpp::config::core_client {
    typedef FastConfig type;
    typedef websocketpp::config::core_client base;
    typedef websocketpp::concurrency::none concurrency_type;
    typedef base::request_type request_type;
    typedef base::response_type response_type;
    typedef base::message_type message_type;
    typedef base::con_msg_manager_type con_msg_manager_type;
    typedef base::endpoint_msg_manager_type endpoint_msg_manager_type;
    typedef websocketpp::log::basic<concurrency_type, websocketpp::log::elevel> elog_type;
    typedef websocketpp::log::basic<concurrency_type, websocketpp::log::alevel> alog_type;
    typedef MaskRng rng_type;
    static bool const enable_multithreading = false;

    struct transport_config : public base::transport_config {
        typedef type::concurrency_type concurrency_type;
        typedef type::alog_type alog_type;
        typedef type::elog_type elog_type;
        typedef type::request_type request_type;
        typedef type::response_type response_type;
        typedef SocketType socket_type;
        static bool const enable_multithreading = false;
    };
    typedef websocketpp::transport::asio::endpoint<transport_config> transport_type;
};

using PlainConfig = FastConfig<websocketpp::transport::asio::basic_socket::endpoint>;
using TlsConfig = FastConfig<websocketpp::transport::asio::tls_socket::endpoint>;

// ------------------------------------------------------------------------------ results

struct Result {
    uint64_t verified = 0;        // echoes verified inside the measured window
    uint64_t errors = 0;          // failed connections + mismatched echoes + unexpected closes
    uint64_t failed = 0, mismatched = 0, unexpected_closes = 0;
    uint64_t opened = 0;
    double cpu_s = 0;             // this process's user+sys CPU seconds in the measured window
    Histogram hist;
};

double cpu_seconds() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

// ------------------------------------------------------------------------------ the load loop

template <typename Config>
class Runner {
public:
    using Client = websocketpp::client<Config>;
    using ConnPtr = typename Client::connection_ptr;
    using MsgPtr = typename Client::message_ptr;

    Runner(const Options& o, int n, int proc_index) : opt_(o), n_(n), rng_(seed_from_os() + (uint64_t)proc_index) {}

    // Opens the connections, waiting until each one is open or has failed (failures counted).
    void connect_all() {
        client_.clear_access_channels(websocketpp::log::alevel::all);
        client_.clear_error_channels(websocketpp::log::elevel::all);
        client_.init_asio(&io_);
        setup_tls();
        conns_.resize(n_);
        for (int i = 0; i < n_; ++i) {
            Conn& c = conns_[i];
            c.index = i;
            make_payload(c);
            websocketpp::lib::error_code ec;
            c.con = client_.get_connection(opt_.url, ec);
            if (ec) {
                if (opt_.verbose) std::fprintf(stderr, "connection %d: %s\n", i, ec.message().c_str());
                fail_conn(c);
                continue;
            }
            Conn* cp = &c;
            c.con->set_tcp_pre_init_handler([cp](websocketpp::connection_hdl) {
                boost::system::error_code e;
                cp->con->get_raw_socket().set_option(boost::asio::ip::tcp::no_delay(true), e);
            });
            c.con->set_open_handler([this, cp](websocketpp::connection_hdl) { on_open(*cp); });
            c.con->set_fail_handler([this, cp](websocketpp::connection_hdl) { on_fail(*cp); });
            c.con->set_close_handler([this, cp](websocketpp::connection_hdl) { on_close(*cp); });
            c.con->set_message_handler([this, cp](websocketpp::connection_hdl, MsgPtr m) { on_message(*cp, m); });
            ++pending_;
            client_.connect(c.con);
        }
        while (pending_ > 0 && io_.run_one() > 0) {}
        io_.restart();
    }

    uint64_t opened() const { return res_.opened; }

    // The closed loop from `go` (an absolute steady_clock time) to go + warmup + seconds.
    void run(Clock::time_point go) {
        start_ = go + to_dur(opt_.warmup);
        end_ = start_ + to_dur(opt_.seconds);
        std::this_thread::sleep_until(go);
        for (Conn& c : conns_) if (c.open) send_next(c);
        boost::asio::steady_timer at_start(io_, start_);
        at_start.async_wait([this](const boost::system::error_code&) { cpu_start_ = cpu_seconds(); });
        boost::asio::steady_timer at_end(io_, end_);
        at_end.async_wait([this](const boost::system::error_code&) { finish(); });
        // Closing handshakes have 5 s (websocketpp's close timeout); after that, stop anyway.
        watchdog_ = std::make_unique<boost::asio::steady_timer>(io_, end_ + std::chrono::seconds(8));
        watchdog_->async_wait([this](const boost::system::error_code& e) {
            if (!e) {
                if (opt_.verbose) std::fprintf(stderr, "close handshakes did not finish; stopping\n");
                io_.stop();
            }
        });
        if (open_count_ == 0) watchdog_->cancel();   // nothing to run: the timers still fire in order
        io_.run();
        watchdog_.reset();
        res_.errors = res_.failed + res_.mismatched + res_.unexpected_closes;
    }

    Result& result() { return res_; }

private:
    struct Conn {
        ConnPtr con;
        std::string payload;      // what is sent (text, bytes, or the CBOR request)
        size_t text_off = 0;      // where the verified text starts in `payload` (--lapps)
        Clock::time_point sent_at;
        uint64_t seq = 0;
        int index = 0;
        bool open = false, done = false, awaiting = false;
    };

    static Clock::duration to_dur(double s) {
        return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
    }

    void setup_tls() {
        if constexpr (std::is_same_v<Config, TlsConfig>) {
            websocketpp::uri u(opt_.url);
            std::string host = u.get_host();
            std::string ca = opt_.ca;
            namespace ssl = boost::asio::ssl;
            auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
            ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3);
            boost::system::error_code ec;
            ctx->load_verify_file(ca, ec);
            if (ec) {
                std::fprintf(stderr, "lapps-bench-client: --ca %s: %s\n", ca.c_str(), ec.message().c_str());
                std::exit(2);
            }
            ctx->set_verify_mode(ssl::verify_peer);
            // Check the certificate's name against the URL's host (IP SAN for an address).
            X509_VERIFY_PARAM* param = SSL_CTX_get0_param(ctx->native_handle());
            std::string bare = host;
            if (bare.size() > 2 && bare.front() == '[' && bare.back() == ']') bare = bare.substr(1, bare.size() - 2);
            unsigned char buf[16];
            if (inet_pton(AF_INET, bare.c_str(), buf) == 1 || inet_pton(AF_INET6, bare.c_str(), buf) == 1)
                X509_VERIFY_PARAM_set1_ip_asc(param, bare.c_str());
            else
                X509_VERIFY_PARAM_set1_host(param, bare.c_str(), 0);
            // Only remembers why a certificate was refused, for --verbose; the verdict is OpenSSL's.
            ctx->set_verify_callback([this](bool preverified, ssl::verify_context& vc) {
                if (!preverified) {
                    int err = X509_STORE_CTX_get_error(vc.native_handle());
                    tls_error_ = X509_verify_cert_error_string(err);
                }
                return preverified;
            });
            client_.set_tls_init_handler([ctx](websocketpp::connection_hdl) { return ctx; });
        }
    }

    void make_payload(Conn& c) {
        size_t n = (size_t)opt_.size;
        std::string body(n, '\0');
        for (size_t k = 0; k < n; ++k) {
            uint64_t r = rng_.next() >> 32;
            body[k] = opt_.binary ? (char)(r & 0xFF) : (char)(0x20 + r % 95);   // printable: 0x20-0x7E
        }
        if (opt_.lapps) {
            c.payload = lapps_request_prefix(n);
            c.text_off = c.payload.size();
            c.payload += body;
        } else {
            c.payload = std::move(body);
            c.text_off = 0;
        }
    }

    // Stamps the sequence number into the message (so a stale or crossed echo cannot match):
    // up to 16 lowercase hex digits at the start of the text (printable in text mode too).
    void stamp(Conn& c) {
        static const char hex[] = "0123456789abcdef";
        size_t n = std::min<size_t>(16, c.payload.size() - c.text_off);
        uint64_t v = c.seq;
        for (size_t k = 0; k < n; ++k) { c.payload[c.text_off + n - 1 - k] = hex[v & 15]; v >>= 4; }
    }

    void send_next(Conn& c) {
        ++c.seq;
        stamp(c);
        c.sent_at = Clock::now();
        c.awaiting = true;
        auto op = (opt_.binary || opt_.lapps) ? websocketpp::frame::opcode::binary : websocketpp::frame::opcode::text;
        websocketpp::lib::error_code ec = c.con->send(c.payload.data(), c.payload.size(), op);
        if (ec) {
            if (opt_.verbose) std::fprintf(stderr, "connection %d: send: %s\n", c.index, ec.message().c_str());
            ++res_.unexpected_closes;
            c.awaiting = false;
        }
    }

    void on_open(Conn& c) {
        c.open = true;
        ++open_count_;
        ++res_.opened;
        --pending_;
    }

    void fail_conn(Conn& c) {
        ++res_.failed;
        c.done = true;
    }

    void on_fail(Conn& c) {
        if (opt_.verbose)
            std::fprintf(stderr, "connection %d failed: %s%s%s\n", c.index, c.con->get_ec().message().c_str(),
                         tls_error_.empty() ? "" : ": certificate refused: ", tls_error_.c_str());
        if (c.open) {                 // websocketpp reports some drops after open as failures
            c.open = false;
            closed_one();
            if (!stopping_) ++res_.unexpected_closes;
        } else if (!c.done) {
            --pending_;
            fail_conn(c);
        }
        c.done = true;
    }

    void closed_one() {
        --open_count_;
        if (stopping_ && open_count_ == 0 && watchdog_) watchdog_->cancel();
    }

    void on_close(Conn& c) {
        if (c.open) { c.open = false; closed_one(); }
        if (!stopping_) {
            ++res_.unexpected_closes;
            if (opt_.verbose)
                std::fprintf(stderr, "connection %d closed by the server: code %d (%s)\n", c.index,
                             (int)c.con->get_remote_close_code(), c.con->get_remote_close_reason().c_str());
        }
        c.done = true;
    }

    void on_message(Conn& c, const MsgPtr& m) {
        if (!c.awaiting || stopping_) return;          // after the end: drained, not counted
        Clock::time_point now = Clock::now();
        c.awaiting = false;
        const std::string& got = m->get_payload();
        bool ok;
        if (opt_.lapps) {
            ok = m->get_opcode() == websocketpp::frame::opcode::binary &&
                 lapps_response_ok(got, c.payload.data() + c.text_off, c.payload.size() - c.text_off);
        } else {
            auto want_op = opt_.binary ? websocketpp::frame::opcode::binary : websocketpp::frame::opcode::text;
            ok = m->get_opcode() == want_op && got.size() == c.payload.size() &&
                 std::memcmp(got.data(), c.payload.data(), got.size()) == 0;
        }
        if (!ok) {
            ++res_.mismatched;
            if (opt_.verbose)
                std::fprintf(stderr, "connection %d: echo %" PRIu64 " does not match (%zu bytes, opcode %d)\n",
                             c.index, c.seq, got.size(), (int)m->get_opcode());
        } else if (now >= start_ && now < end_) {
            ++res_.verified;
            auto us = std::chrono::duration_cast<std::chrono::microseconds>(now - c.sent_at).count();
            res_.hist.add(us < 0 ? 0 : (uint64_t)us);
        }
        if (now < end_) send_next(c);
    }

    void finish() {
        res_.cpu_s = cpu_seconds() - cpu_start_;
        stopping_ = true;
        for (Conn& c : conns_) {
            if (!c.open) continue;
            websocketpp::lib::error_code ec;
            c.con->close(websocketpp::close::status::normal, "", ec);
        }
        if (open_count_ == 0 && watchdog_) watchdog_->cancel();
    }

    const Options& opt_;
    int n_;
    Rng rng_;
    boost::asio::io_service io_;
    Client client_;
    std::vector<Conn> conns_;
    Result res_;
    int pending_ = 0, open_count_ = 0;
    bool stopping_ = false;
    double cpu_start_ = 0;
    Clock::time_point start_, end_;
    std::unique_ptr<boost::asio::steady_timer> watchdog_;
    std::string tls_error_;
};

// ------------------------------------------------------------------------------ processes

bool write_all(int fd, const void* buf, size_t n) {
    const char* p = static_cast<const char*>(buf);
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) { if (errno == EINTR) continue; return false; }
        p += w; n -= (size_t)w;
    }
    return true;
}

bool read_all(int fd, void* buf, size_t n) {
    char* p = static_cast<char*>(buf);
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0) { if (errno == EINTR) continue; return false; }
        if (r == 0) return false;
        p += r; n -= (size_t)r;
    }
    return true;
}

struct WireHeader {
    uint64_t verified, failed, mismatched, unexpected_closes, opened, buckets;
    double cpu_s;
};

// One process's share: connect, tell the parent (ready_fd), wait for the start time (go_fd),
// run, and write the result (ready_fd). Without fds (a single process) it starts at once.
template <typename Config>
Result run_share(const Options& o, int n, int index, int ready_fd, int go_fd) {
    auto runner = std::make_unique<Runner<Config>>(o, n, index);
    runner->connect_all();
    if (o.verbose)
        std::fprintf(stderr, "process %d: %" PRIu64 " of %d connections open\n", index, runner->opened(), n);
    Clock::time_point go;
    if (ready_fd >= 0) {
        char r = 'R';
        int64_t ns = 0;
        if (!write_all(ready_fd, &r, 1) || !read_all(go_fd, &ns, sizeof ns)) _exit(3);
        go = Clock::time_point(std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(ns)));
    } else {
        go = Clock::now();
    }
    runner->run(go);
    return std::move(runner->result());
}

template <typename Config>
Result run_all(const Options& o) {
    if (o.processes == 1) return run_share<Config>(o, o.connections, 0, -1, -1);

    struct Child { pid_t pid; int result_fd; int go_fd; };
    std::vector<Child> kids;
    for (int i = 0; i < o.processes; ++i) {
        int share = o.connections / o.processes + (i < o.connections % o.processes ? 1 : 0);
        int up[2], down[2];
        if (pipe(up) != 0 || pipe(down) != 0) { std::perror("pipe"); std::exit(2); }
        std::fflush(nullptr);
        pid_t pid = fork();
        if (pid < 0) { std::perror("fork"); std::exit(2); }
        if (pid == 0) {
            close(up[0]); close(down[1]);
            for (const Child& k : kids) { close(k.result_fd); close(k.go_fd); }
            Result r = run_share<Config>(o, share, i, up[1], down[0]);
            std::vector<std::pair<uint32_t, uint64_t>> sparse;
            for (int b = 0; b < Histogram::kSize; ++b)
                if (r.hist.counts[b]) sparse.emplace_back((uint32_t)b, r.hist.counts[b]);
            WireHeader h{r.verified, r.failed, r.mismatched, r.unexpected_closes, r.opened, sparse.size(), r.cpu_s};
            bool ok = write_all(up[1], &h, sizeof h);
            for (auto& [b, cnt] : sparse) ok = ok && write_all(up[1], &b, sizeof b) && write_all(up[1], &cnt, sizeof cnt);
            _exit(ok ? 0 : 3);
        }
        close(up[1]); close(down[0]);
        kids.push_back({pid, up[0], down[1]});
    }
    // Everyone connected: start together, a little in the future.
    bool all_ready = true;
    for (const Child& k : kids) {
        char r;
        if (!read_all(k.result_fd, &r, 1) || r != 'R') all_ready = false;
    }
    if (!all_ready) {
        std::fprintf(stderr, "lapps-bench-client: a worker process died before starting\n");
        for (const Child& k : kids) kill(k.pid, SIGKILL);
        for (const Child& k : kids) waitpid(k.pid, nullptr, 0);
        std::exit(2);
    }
    auto go = Clock::now() + std::chrono::milliseconds(20);
    int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(go.time_since_epoch()).count();
    for (const Child& k : kids) write_all(k.go_fd, &ns, sizeof ns);

    Result total;
    for (const Child& k : kids) {
        WireHeader h{};
        bool ok = read_all(k.result_fd, &h, sizeof h);
        for (uint64_t j = 0; ok && j < h.buckets; ++j) {
            uint32_t b; uint64_t cnt;
            ok = read_all(k.result_fd, &b, sizeof b) && read_all(k.result_fd, &cnt, sizeof cnt) &&
                 b < (uint32_t)Histogram::kSize;
            if (ok) { total.hist.counts[b] += cnt; total.hist.total += cnt; }
        }
        int status = 0;
        waitpid(k.pid, &status, 0);
        close(k.result_fd); close(k.go_fd);
        if (!ok || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            std::fprintf(stderr, "lapps-bench-client: worker process %d failed (status %d)\n", (int)k.pid, status);
            ++total.failed;           // counted as an error: its results are missing
            continue;
        }
        total.verified += h.verified;
        total.failed += h.failed;
        total.mismatched += h.mismatched;
        total.unexpected_closes += h.unexpected_closes;
        total.opened += h.opened;
        total.cpu_s += h.cpu_s;
    }
    total.errors = total.failed + total.mismatched + total.unexpected_closes;
    return total;
}

}  // namespace

int main(int argc, char** argv) {
    signal(SIGPIPE, SIG_IGN);
    Options o = parse_args(argc, argv);
    bool tls = o.url.rfind("wss://", 0) == 0;
    if (tls) {   // a bad --ca is a usage error, found before any process starts
        boost::asio::ssl::context probe(boost::asio::ssl::context::tls_client);
        boost::system::error_code ec;
        probe.load_verify_file(o.ca, ec);
        if (ec) usage(("--ca " + o.ca + ": " + ec.message()).c_str());
    }
    Result r = tls ? run_all<TlsConfig>(o) : run_all<PlainConfig>(o);

    double total_rps = (double)r.verified / o.seconds;
    double per_client = total_rps / o.connections;
    if (o.verbose) {
        std::fprintf(stderr,
                     "connections open %" PRIu64 "/%d; failed %" PRIu64 ", mismatched %" PRIu64
                     ", unexpected closes %" PRIu64 "\n"
                     "client CPU in the window: %.3f s user+sys = %.2f cores (%d process%s), %.1f us per round trip\n",
                     r.opened, o.connections, r.failed, r.mismatched, r.unexpected_closes, r.cpu_s,
                     r.cpu_s / o.seconds, o.processes, o.processes == 1 ? "" : "es",
                     r.verified ? r.cpu_s * 1e6 / (double)r.verified : 0.0);
    }
    std::printf("RESULT url=%s connections=%d size=%ld seconds=%g total_rps=%.1f per_client_rps=%.1f "
                "p50_us=%" PRIu64 " p99_us=%" PRIu64 " errors=%" PRIu64 " verified=%" PRIu64 "\n",
                o.url.c_str(), o.connections, o.size, o.seconds, total_rps, per_client,
                r.hist.percentile(50), r.hist.percentile(99), r.errors, r.verified);
    std::fflush(stdout);
    return r.errors == 0 ? 0 : 1;
}
