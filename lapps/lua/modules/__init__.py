"""Built-in Lua host modules (DESIGN §3 "Built-in modules").

Each `install_*` function builds one module table in a given runtime and returns it; the
service host decides which ones become globals (`nljson` always, the rest through
`preload`). Every module accepts both call styles of the original LAppS (`m.f(x)` and
`m:f(x)`): a tiny Lua wrapper drops the module when it comes as the first argument, so
the check costs no Python call.
"""
