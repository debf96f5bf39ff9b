// Command compose-config loads a compose file as `docker compose config` does, with compose-go,
// the library Docker Compose itself reads compose files with: the Compose Specification's schema,
// interpolation, normalisation and the consistency checks (every service, volume and network a
// service names is defined, depends_on names services). It prints the project as compose-go
// resolved it, in JSON, or the reason the file is invalid and exits 1.
//
// scripts/check-docker runs it on docker/docker-compose.yml: neither Docker nor Docker Compose
// is installed where the tests run, and Debian's docker-compose (v1) predates the file's
// top-level name.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: compose-config FILE")
		os.Exit(2)
	}
	file := os.Args[1]
	options, err := cli.NewProjectOptions([]string{file}, cli.WithOsEnv, cli.WithResolvedPaths(true),
		cli.WithConsistency(true))
	if err != nil {
		fail(file, err)
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		fail(file, err)
	}
	out, err := project.MarshalJSON()
	if err != nil {
		fail(file, err)
	}
	os.Stdout.Write(append(out, '\n'))
}

func fail(file string, err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", file, err)
	os.Exit(1)
}
