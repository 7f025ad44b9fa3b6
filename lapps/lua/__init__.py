"""The only package that imports lupa: Lua runtimes, the sandbox and the host API."""
