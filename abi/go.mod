module github.com/osprey-ml/osprey/abi

go 1.26
