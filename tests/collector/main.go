// Command otelcol-otel-sli-test is a small OpenTelemetry Collector
// distribution used only by otel-sli's integration tests.
//
// It is written by hand in the shape that the Collector builder (ocb) would
// generate (main.go + components.go), so that it builds with nothing but
// `go build` and the Go module proxy. Build it with tests/collector/build.sh.
//
// Usage:
//
//	otelcol-test --config path/to/config.yaml
//	otelcol-test --config path/to/config.yaml --config 'yaml:service::telemetry::metrics::level: none'
//	otelcol-test components   # lists the component types compiled in
//	otelcol-test validate --config path/to/config.yaml
//
// Config URIs accept the file:, env: and yaml: schemes; a bare path is a file.
// Inside a config, ${env:VAR} (or ${VAR}) expands an environment variable.
package main

import (
	"log"
	"runtime/debug"
	"strings"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/confmap/provider/yamlprovider"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/debugexporter"
	"go.opentelemetry.io/collector/exporter/otlpexporter"
	"go.opentelemetry.io/collector/exporter/otlphttpexporter"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/batchprocessor"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/service/telemetry/otelconftelemetry"

	"github.com/open-telemetry/opentelemetry-collector-contrib/connector/spanmetricsconnector"
	"github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter"
	"github.com/open-telemetry/opentelemetry-collector-contrib/exporter/loadbalancingexporter"
	"github.com/open-telemetry/opentelemetry-collector-contrib/exporter/prometheusexporter"
)

// version is the Collector release every component is pinned to (see go.mod).
const version = "0.161.0-otel-sli-test"

func main() {
	info := component.BuildInfo{
		Command:     "otelcol-otel-sli-test",
		Description: "OpenTelemetry Collector distribution for otel-sli integration tests",
		Version:     version,
	}

	set := otelcol.CollectorSettings{
		BuildInfo: info,
		Factories: components,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				ProviderFactories: []confmap.ProviderFactory{
					envprovider.NewFactory(),
					fileprovider.NewFactory(),
					yamlprovider.NewFactory(),
				},
				// A --config value without a scheme is read as a file path;
				// ${VAR} without a scheme inside a config is read from the environment.
				DefaultScheme: "env",
			},
		},
		ProviderModules: map[string]string{
			"env":  modulePath("go.opentelemetry.io/collector/confmap/provider/envprovider"),
			"file": modulePath("go.opentelemetry.io/collector/confmap/provider/fileprovider"),
			"yaml": modulePath("go.opentelemetry.io/collector/confmap/provider/yamlprovider"),
		},
	}

	cmd := otelcol.NewCommand(set)
	if err := cmd.Execute(); err != nil {
		log.Fatalf("collector server run finished with error: %v", err)
	}
}

// components lists exactly the component factories this distribution ships.
//
// Type names in this release (v0.161.0); the deprecated alias in brackets
// is still accepted and logs a deprecation warning:
//
//	receivers:  otlp
//	processors: batch
//	exporters:  otlp_grpc [otlp], otlp_http [otlphttp], debug,
//	            load_balancing [loadbalancing], prometheus, file
//	connectors: span_metrics [spanmetrics]
func components() (otelcol.Factories, error) {
	receivers := []entry[receiver.Factory]{
		{otlpreceiver.NewFactory(), "go.opentelemetry.io/collector/receiver/otlpreceiver"},
	}
	processors := []entry[processor.Factory]{
		{batchprocessor.NewFactory(), "go.opentelemetry.io/collector/processor/batchprocessor"},
	}
	exporters := []entry[exporter.Factory]{
		{otlpexporter.NewFactory(), "go.opentelemetry.io/collector/exporter/otlpexporter"},
		{otlphttpexporter.NewFactory(), "go.opentelemetry.io/collector/exporter/otlphttpexporter"},
		{debugexporter.NewFactory(), "go.opentelemetry.io/collector/exporter/debugexporter"},
		{loadbalancingexporter.NewFactory(), "github.com/open-telemetry/opentelemetry-collector-contrib/exporter/loadbalancingexporter"},
		{prometheusexporter.NewFactory(), "github.com/open-telemetry/opentelemetry-collector-contrib/exporter/prometheusexporter"},
		{fileexporter.NewFactory(), "github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter"},
	}
	connectors := []entry[connector.Factory]{
		{spanmetricsconnector.NewFactory(), "github.com/open-telemetry/opentelemetry-collector-contrib/connector/spanmetricsconnector"},
	}

	var err error
	factories := otelcol.Factories{
		Telemetry: otelconftelemetry.NewFactory(),
	}
	if factories.Extensions, err = otelcol.MakeFactoryMap[extension.Factory](); err != nil {
		return otelcol.Factories{}, err
	}
	if factories.Receivers, factories.ReceiverModules, err = makeMaps(receivers); err != nil {
		return otelcol.Factories{}, err
	}
	if factories.Processors, factories.ProcessorModules, err = makeMaps(processors); err != nil {
		return otelcol.Factories{}, err
	}
	if factories.Exporters, factories.ExporterModules, err = makeMaps(exporters); err != nil {
		return otelcol.Factories{}, err
	}
	if factories.Connectors, factories.ConnectorModules, err = makeMaps(connectors); err != nil {
		return otelcol.Factories{}, err
	}
	return factories, nil
}

// entry pairs a component factory with the Go package it comes from.
type entry[T component.Factory] struct {
	factory T
	pkg     string
}

// makeMaps builds the type -> factory map (deprecated aliases included, as
// otelcol.MakeFactoryMap does) and the type -> "module version" map that the
// `components` subcommand prints.
func makeMaps[T component.Factory](entries []entry[T]) (map[component.Type]T, map[component.Type]string, error) {
	fs := make([]T, 0, len(entries))
	for _, e := range entries {
		fs = append(fs, e.factory)
	}
	factories, err := otelcol.MakeFactoryMap(fs...)
	if err != nil {
		return nil, nil, err
	}
	modules := make(map[component.Type]string, len(factories))
	for typ, f := range factories {
		for _, e := range entries {
			if any(f) == any(e.factory) {
				modules[typ] = modulePath(e.pkg)
			}
		}
	}
	return factories, modules, nil
}

// modulePath returns "module version" for the module that provides pkg,
// read from the build info that `go build` embeds in the binary.
func modulePath(pkg string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return pkg
	}
	best, ver := "", ""
	for _, d := range bi.Deps {
		if (pkg == d.Path || strings.HasPrefix(pkg, d.Path+"/")) && len(d.Path) > len(best) {
			best, ver = d.Path, d.Version
			if d.Replace != nil {
				ver = d.Replace.Version
			}
		}
	}
	if best == "" {
		return pkg
	}
	return best + " " + ver
}
