module hazardwatch

go 1.26

require (
	github.com/goburrow/modbus v0.1.0
	go.yaml.in/yaml/v3 v3.0.6
)

require github.com/goburrow/serial v0.1.0 // indirect
