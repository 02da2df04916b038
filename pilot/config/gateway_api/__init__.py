"""The Kubernetes Gateway API (gateway.networking.k8s.io): its schema, and its conversion into Istio's
Gateways and VirtualServices, as istiod's pilot/pkg/config/kube/gateway does."""
