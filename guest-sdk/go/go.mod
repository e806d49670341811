module github.com/osprey-ml/osprey/guest-sdk/go

go 1.26

require github.com/osprey-ml/osprey/abi v0.0.0

replace github.com/osprey-ml/osprey/abi => ../../abi
