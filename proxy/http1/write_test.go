package http1

import "testing"

func TestAppendRequestDropsHopByHop(t *testing.T) {
	in := "POST /p?q HTTP/1.0\r\nHost: a.example\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\n" +
		"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nUpgrade: h2c\r\n" +
		"Trailer: X-Sum\r\nContent-Length: 3\r\nAccept: */*\r\n\r\nabc"
	var p Parser
	var req Request
	if err := p.ReadRequest(newReader(in), &req); err != nil {
		t.Fatal(err)
	}
	got := AppendRequest(nil, &req, &HeadOptions{Extra: []Header{{Name: []byte("X-Forwarded-For"), Value: []byte("10.0.0.1")}}})
	want := "POST /p?q HTTP/1.1\r\nHost: a.example\r\nTrailer: X-Sum\r\nAccept: */*\r\nContent-Length: 3\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n"
	if string(got) != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}

func TestAppendRequestUpgradeAndClose(t *testing.T) {
	in := "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
	var p Parser
	var req Request
	if err := p.ReadRequest(newReader(in), &req); err != nil {
		t.Fatal(err)
	}
	if got := string(AppendRequest(nil, &req, &HeadOptions{Upgrade: true})); got != "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n" {
		t.Fatalf("%q", got)
	}
	if got := string(AppendRequest(nil, &req, &HeadOptions{Close: true})); got != "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" {
		t.Fatalf("%q", got)
	}
}

func TestAppendRequestAbsoluteFormSendsTargetAuthorityAsHost(t *testing.T) {
	var p Parser
	var req Request
	if err := p.ReadRequest(newReader("GET http://b:81/x HTTP/1.1\r\nHost: a\r\n\r\n"), &req); err != nil {
		t.Fatal(err)
	}
	if got := string(AppendRequest(nil, &req, nil)); got != "GET http://b:81/x HTTP/1.1\r\nHost: b:81\r\n\r\n" {
		t.Fatalf("%q", got)
	}
}

func TestAppendResponseFraming(t *testing.T) {
	tests := []struct {
		in   string
		o    HeadOptions
		want string
	}{
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX: 1\r\n\r\n", HeadOptions{},
			"HTTP/1.1 200 OK\r\nX: 1\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"HTTP/1.1 200 OK\r\n\r\n", HeadOptions{},
			"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"},
		{"HTTP/1.1 200 OK\r\n\r\n", HeadOptions{Chunk: true},
			"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive\r\n\r\n", HeadOptions{},
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"},
		{"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", HeadOptions{},
			"HTTP/1.1 204 No Content\r\n\r\n"},
		{"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n", HeadOptions{Close: true},
			"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\nConnection: close\r\n\r\n"},
		{"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", HeadOptions{Upgrade: true},
			"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"},
	}
	for _, tc := range tests {
		var p Parser
		var resp Response
		if err := p.ReadResponse(newReader(tc.in), &resp, []byte("GET")); err != nil {
			t.Fatal(err)
		}
		if got := string(AppendResponse(nil, &resp, &tc.o)); got != tc.want {
			t.Errorf("%q:\n got  %q\n want %q", tc.in, got, tc.want)
		}
	}
}
