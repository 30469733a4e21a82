module weftpeers/select

go 1.19
