package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

func TestEchoServerEchoesAndClosesAfterTheClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- serveEcho(ln) }()
	for range 3 { // the connect load: a new conn per 16-byte echo
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		msg := []byte("0123456789abcdef")
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("echo %q, %v; want %q", got, err, msg)
		}
		_ = c.(*net.TCPConn).CloseWrite()
		if n, err := c.Read(got); n != 0 || !errors.Is(err, io.EOF) {
			t.Fatalf("after the client's FIN: read %d, %v; want EOF (the server closes)", n, err)
		}
		c.Close()
	}
	ln.Close()
	if err := <-done; err != nil {
		t.Fatalf("serveEcho after its listener closed: %v", err)
	}
}
