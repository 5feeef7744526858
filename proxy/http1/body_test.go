package http1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestContentLengthBodyCutShortIsUnexpectedEOF(t *testing.T) {
	var b BodyReader
	b.Reset(newReader("hel"), FramingLength, 5, Limits{})
	got, err := io.ReadAll(&b)
	if !errors.Is(err, io.ErrUnexpectedEOF) || string(got) != "hel" {
		t.Fatalf("%q %v", got, err)
	}
}

func TestContentLengthBodyDoesNotReadPastLength(t *testing.T) {
	br := newReader("helloNEXT")
	var b BodyReader
	b.Reset(br, FramingLength, 5, Limits{})
	got, err := io.ReadAll(&b)
	if err != nil || string(got) != "hello" {
		t.Fatalf("%q %v", got, err)
	}
	rest, _ := io.ReadAll(br)
	if string(rest) != "NEXT" {
		t.Fatalf("rest %q", rest)
	}
}

func TestChunkedWithTrailers(t *testing.T) {
	br := newReader("5;name=\"q\\\"v\";b\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\nX-Other:  2 \r\n\r\nNEXT")
	var b BodyReader
	b.Reset(br, FramingChunked, 0, Limits{})
	got, err := io.ReadAll(&b)
	if err != nil || string(got) != "hello world" {
		t.Fatalf("%q %v", got, err)
	}
	tr := b.Trailers()
	if len(tr) != 2 || string(tr[0].Name) != "X-Sum" || string(tr[1].Value) != "2" {
		t.Fatalf("trailers %d", len(tr))
	}
	rest, _ := io.ReadAll(br)
	if string(rest) != "NEXT" {
		t.Fatalf("rest %q", rest)
	}
}

func TestForwardChunkedReencodesAndFiltersTrailers(t *testing.T) {
	in := "5;ext=1\r\nhello\r\n0\r\nX-Sum: 1\r\nContent-Length: 9\r\nConnection: close\r\n\r\n"
	var b BodyReader
	b.Reset(newReader(in), FramingChunked, 0, Limits{})
	var out bytes.Buffer
	n, err := b.Forward(&out, make([]byte, 3), true)
	if err != nil || n != 5 {
		t.Fatal(n, err)
	}
	want := "3\r\nhel\r\n2\r\nlo\r\n0\r\nX-Sum: 1\r\n\r\n"
	if out.String() != want {
		t.Fatalf("got %q, want %q", out.String(), want)
	}
}

func TestForwardDechunksAndPassesLengthVerbatim(t *testing.T) {
	var b BodyReader
	b.Reset(newReader("5\r\nhello\r\n0\r\n\r\n"), FramingChunked, 0, Limits{})
	var out bytes.Buffer
	if _, err := b.Forward(&out, make([]byte, 64), false); err != nil || out.String() != "hello" {
		t.Fatalf("%q %v", out.String(), err)
	}
	b.Reset(newReader("abcdef"), FramingLength, 4, Limits{})
	out.Reset()
	if _, err := b.Forward(&out, make([]byte, 64), false); err != nil || out.String() != "abcd" {
		t.Fatalf("%q %v", out.String(), err)
	}
}

func TestForwardRechunksUntilClose(t *testing.T) {
	var b BodyReader
	b.Reset(newReader("abcdef"), FramingUntilClose, 0, Limits{})
	var out bytes.Buffer
	if _, err := b.Forward(&out, make([]byte, 4), true); err != nil {
		t.Fatal(err)
	}
	if out.String() != "4\r\nabcd\r\n2\r\nef\r\n0\r\n\r\n" {
		t.Fatalf("%q", out.String())
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("peer gone") }

func TestForwardWriteErrorLeavesReadErrorNil(t *testing.T) {
	var b BodyReader
	b.Reset(newReader("hello"), FramingLength, 5, Limits{})
	_, err := b.Forward(failWriter{}, make([]byte, 8), false)
	if err == nil || b.Err() != io.EOF && b.Err() != nil {
		t.Fatalf("err %v, body err %v", err, b.Err())
	}
}

func TestBodyReaderResetReuses(t *testing.T) {
	var b BodyReader
	for i := 0; i < 3; i++ {
		b.Reset(newReader("3\r\nabc\r\n0\r\nT: 1\r\n\r\n"), FramingChunked, 0, Limits{})
		got, err := io.ReadAll(&b)
		if err != nil || string(got) != "abc" || len(b.Trailers()) != 1 {
			t.Fatalf("round %d: %q %v", i, got, err)
		}
	}
	b.Reset(nil, FramingNone, 0, Limits{})
	if n, err := b.Read(make([]byte, 4)); n != 0 || err != io.EOF {
		t.Fatal(n, err)
	}
}

func TestChunkedOneByteReads(t *testing.T) {
	in := "3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n"
	var b BodyReader
	b.Reset(bufio.NewReaderSize(strings.NewReader(in), 16), FramingChunked, 0, Limits{})
	var got []byte
	one := make([]byte, 1)
	for {
		n, err := b.Read(one)
		got = append(got, one[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if string(got) != "abcd" {
		t.Fatalf("%q", got)
	}
}
