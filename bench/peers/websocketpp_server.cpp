// Peer echo server: websocketpp on Boost.Asio (config::asio, no TLS), one thread, for
// bench/run_peers.py.
//
//     websocketpp_server PORT
//
// Listens on 127.0.0.1:PORT, any path; every message goes back as it came (text as text,
// binary as binary). TCP_NODELAY on accepted sockets, logging off, websocketpp's default
// 32 MB message limit. Prints nothing but errors.
//
// Build (make bench-peers does it), from the repository root:
//   g++ -O2 -std=c++17 -o bench/peers/websocketpp_server bench/peers/websocketpp_server.cpp
//       -lboost_system -pthread
#include <websocketpp/config/asio_no_tls.hpp>
#include <websocketpp/server.hpp>

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <string>

using Server = websocketpp::server<websocketpp::config::asio>;

int main(int argc, char **argv) {
    if (argc != 2) {
        std::cerr << "usage: websocketpp_server PORT\n";
        return 2;
    }
    const int port = std::atoi(argv[1]);
    if (port <= 0 || port > 65535) {
        std::cerr << "websocketpp_server: bad port " << argv[1] << "\n";
        return 2;
    }
    Server server;
    try {
        server.clear_access_channels(websocketpp::log::alevel::all);
        server.clear_error_channels(websocketpp::log::elevel::all);
        server.init_asio();
        server.set_reuse_addr(true);
        server.set_listen_backlog(1024);
        server.set_socket_init_handler([](websocketpp::connection_hdl, boost::asio::ip::tcp::socket &s) {
            boost::system::error_code ec;
            s.set_option(boost::asio::ip::tcp::no_delay(true), ec);
        });
        server.set_message_handler([&server](websocketpp::connection_hdl hdl, Server::message_ptr msg) {
            websocketpp::lib::error_code ec;
            server.send(hdl, msg->get_payload(), msg->get_opcode(), ec);   // errors: the peer went away
        });
        boost::asio::signal_set signals(server.get_io_service(), SIGTERM, SIGINT);
        signals.async_wait([&server](const boost::system::error_code &, int) {
            websocketpp::lib::error_code ec;
            server.stop_listening(ec);
            server.stop();
        });
        websocketpp::lib::error_code ec;
        server.listen(boost::asio::ip::address::from_string("127.0.0.1"), static_cast<uint16_t>(port), ec);
        if (ec) {
            std::cerr << "websocketpp_server: cannot listen on 127.0.0.1:" << port << ": " << ec.message() << "\n";
            return 1;
        }
        server.start_accept();
        server.run();
    } catch (const std::exception &e) {
        std::cerr << "websocketpp_server: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
