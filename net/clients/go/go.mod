module rush

go 1.19
