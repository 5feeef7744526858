// Package config owns tether's configuration: the TOML schema, every default
// (defaults.go, and nowhere else), TCP profile inheritance through `parent`,
// and validation whose messages name the full path of the bad value
// (`virtual_server "web": client_profile "lan": keepalive_interval: must be > 0`).
//
// Load returns plain, validated data with every default filled in; other
// packages read these structs and never parse TOML or apply defaults
// themselves. config opens no sockets: checks that need the network (a port
// already in use) belong to whoever binds it.
package config
