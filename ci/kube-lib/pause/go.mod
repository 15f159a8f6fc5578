module pybuildx.test/pause

go 1.22
