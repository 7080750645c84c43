module example.com/hazard

go 1.26
