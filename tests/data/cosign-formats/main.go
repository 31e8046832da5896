// A harness that writes cosign's signature artifacts with the upstream type definitions and
// Go's encoding/json, so tests/cosigntools.py is checked byte for byte against them.
//
// Copied unchanged (only the package clause and imports differ; the types' own files import
// go-containerregistry, whose Hash and MediaType are strings in JSON, so they are plain
// strings here, and Platform, never set here, a *json.RawMessage):
//   - SimpleContainerImage, Critical, Identity, Image, CosignSignatureType and the body of
//     Cosign.SimpleContainerImage: sigstore/sigstore bd0ad712 pkg/signature/payload/payload.go
//   - Manifest, IndexManifest, Descriptor: google/go-containerregistry 3f4ff3ca pkg/v1/manifest.go
//   - referrerManifest (embedding Manifest, adding ArtifactType): sigstore/cosign d6d86c22
//     pkg/oci/remote/write.go
//   - the PAE format string: sigstore/sigstore-go 4594ab4c pkg/sign/content.go
//     DSSEData.PreAuthEncoding
//   - the fallback index (sorted by digest): go-containerregistry pkg/v1/remote/write.go
//     commitSubjectReferrers
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
)

// ---- sigstore/sigstore pkg/signature/payload/payload.go

// CosignSignatureType is the value of `critical.type` in a SimpleContainerImage payload.
const CosignSignatureType = "cosign container image signature"

// SimpleContainerImage describes the structure of a basic container image signature payload, as defined at:
// https://github.com/containers/image/blob/main/docs/containers-signature.5.md#json-data-format
type SimpleContainerImage struct {
	Critical Critical       `json:"critical"` // Critical data critical to correctly evaluating the validity of the signature
	Optional map[string]any `json:"optional"` // Optional optional metadata about the image
}

// Critical data critical to correctly evaluating the validity of a signature
type Critical struct {
	Identity Identity `json:"identity"` // Identity claimed identity of the image
	Image    Image    `json:"image"`    // Image identifies the container that the signature applies to
	Type     string   `json:"type"`     // Type must be 'atomic container signature'
}

// Identity is the claimed identity of the image
type Identity struct {
	DockerReference string `json:"docker-reference"` // DockerReference is a reference used to refer to or download the image
}

// Image identifies the container image that the signature applies to
type Image struct {
	DockerManifestDigest string `json:"docker-manifest-digest"` // DockerManifestDigest the manifest digest of the signed container image
}

// ---- google/go-containerregistry pkg/v1/manifest.go (Hash, MediaType: strings in JSON)

// Manifest represents the OCI image manifest in a structured way.
type Manifest struct {
	SchemaVersion int64             `json:"schemaVersion"`
	MediaType     string            `json:"mediaType,omitempty"`
	Config        Descriptor        `json:"config"`
	Layers        []Descriptor      `json:"layers"`
	Annotations   map[string]string `json:"annotations,omitempty"`
	Subject       *Descriptor       `json:"subject,omitempty"`
	ArtifactType  string            `json:"artifactType,omitempty"`
}

// IndexManifest represents an OCI image index in a structured way.
type IndexManifest struct {
	SchemaVersion int64             `json:"schemaVersion"`
	MediaType     string            `json:"mediaType,omitempty"`
	Manifests     []Descriptor      `json:"manifests"`
	Annotations   map[string]string `json:"annotations,omitempty"`
	Subject       *Descriptor       `json:"subject,omitempty"`
	ArtifactType  string            `json:"artifactType,omitempty"`
}

// Descriptor holds a reference from the manifest to one of its constituent elements.
type Descriptor struct {
	MediaType    string            `json:"mediaType"`
	Size         int64             `json:"size"`
	Digest       string            `json:"digest"`
	Data         []byte            `json:"data,omitempty"`
	URLs         []string          `json:"urls,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	Platform     *json.RawMessage  `json:"platform,omitempty"`
	ArtifactType string            `json:"artifactType,omitempty"`
}

// ---- sigstore/cosign pkg/oci/remote/write.go

type referrerManifest struct {
	Manifest
	ArtifactType string `json:"artifactType,omitempty"`
}

// ---- the harness: one JSON request on stdin, the artifacts' bytes (base64 in JSON) out

type request struct {
	Repository      string            `json:"repository"`
	Digest          string            `json:"digest"`
	Statement       []byte            `json:"statement"`
	Bundle          Descriptor        `json:"bundle"`
	Subject         Descriptor        `json:"subject"`
	Annotations     map[string]string `json:"annotations"`
	ReferrerDigests []string          `json:"referrerDigests"`
	ReferrerSize    int64             `json:"referrerSize"`
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		panic(err)
	}
	// Cosign{Image: digest}.SimpleContainerImage(), ClaimedIdentity and Annotations empty
	payload, _ := json.Marshal(SimpleContainerImage{
		Critical: Critical{
			Identity: Identity{DockerReference: req.Repository},
			Image:    Image{DockerManifestDigest: req.Digest},
			Type:     CosignSignatureType,
		},
		Optional: nil,
	})
	payloadType := "application/vnd.in-toto+json"
	pae := fmt.Sprintf("DSSEv1 %d %s %d %s", len(payloadType), payloadType, len(req.Statement), req.Statement)
	artifactType := "application/vnd.dev.sigstore.bundle.v0.3+json"
	// WriteReferrer's manifest
	ref, _ := json.Marshal(referrerManifest{Manifest{
		SchemaVersion: 2,
		MediaType:     "application/vnd.oci.image.manifest.v1+json",
		Config: Descriptor{
			MediaType:    "application/vnd.oci.empty.v1+json",
			ArtifactType: artifactType,
			Digest:       "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
			Size:         2,
		},
		Layers:      []Descriptor{req.Bundle},
		Subject:     &req.Subject,
		Annotations: req.Annotations,
	}, artifactType})
	// commitSubjectReferrers' fallback index, every referrer added
	im := IndexManifest{SchemaVersion: 2, MediaType: "application/vnd.oci.image.index.v1+json"}
	for _, d := range req.ReferrerDigests {
		im.Manifests = append(im.Manifests, Descriptor{
			MediaType: "application/vnd.oci.image.manifest.v1+json", Size: req.ReferrerSize,
			Digest: d, Annotations: req.Annotations, ArtifactType: artifactType})
	}
	sort.Slice(im.Manifests, func(i, j int) bool {
		return im.Manifests[i].Digest < im.Manifests[j].Digest
	})
	index, _ := json.Marshal(im)
	out, _ := json.Marshal(map[string][]byte{
		"payload": payload, "pae": []byte(pae), "referrer": ref, "index": index,
	})
	os.Stdout.Write(out)
}
