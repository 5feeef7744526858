package http1

import (
	"bufio"
	"net/http"
)

func httpReadRequest(br *bufio.Reader) (*http.Request, error) { return http.ReadRequest(br) }
