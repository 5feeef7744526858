package admin

import (
	"strconv"

	"go.uber.org/zap"

	"github.com/tetherproxy/tether/pool"
)

func quote(s string) string { return strconv.Quote(s) }

func zapMember(poolName, addr string, old, now pool.AdminState, from string) []zap.Field {
	return []zap.Field{zap.String("pool", poolName), zap.String("member", addr),
		zap.Stringer("previous", old), zap.Stringer("admin", now), zap.String("from", from)}
}
