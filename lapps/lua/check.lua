
local source, name = ...
local fn, err = loadstring(source, name)
return fn ~= nil, err
