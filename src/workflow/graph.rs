//! The step DAG: order, ancestry, cycles (reported as a full path, which
//! petgraph's `toposort` does not give), and dot/mermaid export.

use super::spec::Workflow;
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::{BTreeMap, BTreeSet};

/// Every elementary cycle reachable by DFS, each as `a -> b -> a` ids,
/// reported once. `edges` maps a step to the steps it needs.
pub fn find_cycles(edges: &BTreeMap<String, Vec<String>>) -> Vec<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Fresh,
        Active,
        Done,
    }
    fn visit(
        node: &str,
        edges: &BTreeMap<String, Vec<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
        cycles: &mut Vec<Vec<String>>,
    ) {
        marks.insert(node.to_string(), Mark::Active);
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            match marks.get(next.as_str()).copied().unwrap_or(Mark::Fresh) {
                Mark::Fresh if edges.contains_key(next) => visit(next, edges, marks, path, cycles),
                Mark::Active => {
                    let start = path.iter().position(|p| p == next).unwrap_or(0);
                    let mut cycle: Vec<String> = path[start..].to_vec();
                    cycle.push(next.clone());
                    cycles.push(cycle);
                }
                _ => {}
            }
        }
        path.pop();
        marks.insert(node.to_string(), Mark::Done);
    }
    let mut marks = BTreeMap::new();
    let mut cycles = Vec::new();
    for node in edges.keys() {
        if marks.get(node.as_str()).copied().unwrap_or(Mark::Fresh) == Mark::Fresh {
            visit(node, edges, &mut marks, &mut Vec::new(), &mut cycles);
        }
    }
    cycles
}

/// A validated workflow's DAG (acyclic by construction).
pub struct Dag {
    graph: DiGraph<String, ()>,
    index: BTreeMap<String, NodeIndex>,
    order: Vec<String>,
}

impl Dag {
    pub fn new(workflow: &Workflow) -> Dag {
        let mut graph = DiGraph::new();
        let mut index = BTreeMap::new();
        for step in &workflow.steps {
            index.insert(step.id.clone(), graph.add_node(step.id.clone()));
        }
        for step in &workflow.steps {
            for need in &step.needs {
                if let (Some(&from), Some(&to)) = (index.get(need), index.get(&step.id)) {
                    graph.add_edge(from, to, ());
                }
            }
        }
        // Stable order: file order, constrained by dependencies.
        let mut order = Vec::new();
        let mut placed = BTreeSet::new();
        while order.len() < workflow.steps.len() {
            let before = order.len();
            for step in &workflow.steps {
                if !placed.contains(&step.id) && step.needs.iter().all(|n| placed.contains(n)) {
                    placed.insert(step.id.clone());
                    order.push(step.id.clone());
                }
            }
            if order.len() == before {
                break; // a cycle: validation reports it
            }
        }
        Dag {
            graph,
            index,
            order,
        }
    }

    /// Step ids in an order that respects `needs`, ties in file order.
    pub fn order(&self) -> &[String] {
        &self.order
    }

    /// Every step that (transitively) needs `id`.
    pub fn descendants(&self, id: &str) -> BTreeSet<String> {
        self.walk(id, petgraph::Direction::Outgoing)
    }

    /// Every step `id` (transitively) needs.
    pub fn ancestors(&self, id: &str) -> BTreeSet<String> {
        self.walk(id, petgraph::Direction::Incoming)
    }

    fn walk(&self, id: &str, dir: petgraph::Direction) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let Some(&start) = self.index.get(id) else {
            return seen;
        };
        let mut stack = vec![start];
        while let Some(n) = stack.pop() {
            for next in self.graph.neighbors_directed(n, dir) {
                if seen.insert(self.graph[next].clone()) {
                    stack.push(next);
                }
            }
        }
        seen
    }
}

/// Graphviz dot.
pub fn to_dot(workflow: &Workflow) -> String {
    let mut out = format!("digraph \"{}\" {{\n  rankdir=LR;\n", escape(&workflow.name));
    for step in &workflow.steps {
        out.push_str(&format!(
            "  \"{}\" [label=\"{}\\n({})\"];\n",
            escape(&step.id),
            escape(&step.id),
            escape(&step.uses)
        ));
    }
    for step in &workflow.steps {
        for need in &step.needs {
            out.push_str(&format!(
                "  \"{}\" -> \"{}\";\n",
                escape(need),
                escape(&step.id)
            ));
        }
    }
    out.push_str("}\n");
    out
}

/// Mermaid flowchart (renders on GitHub).
pub fn to_mermaid(workflow: &Workflow) -> String {
    let mut out = String::from("flowchart LR\n");
    for step in &workflow.steps {
        out.push_str(&format!(
            "  {}[\"{}<br/>({})\"]\n",
            step.id, step.id, step.uses
        ));
    }
    for step in &workflow.steps {
        for need in &step.needs {
            out.push_str(&format!("  {} --> {}\n", need, step.id));
        }
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edges(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn cycles_are_reported_as_full_paths() {
        let cycles = find_cycles(&edges(&[
            ("a", &["c"]),
            ("b", &["a"]),
            ("c", &["b"]),
            ("d", &[]),
        ]));
        assert_eq!(cycles, vec![vec!["a", "c", "b", "a"]]);
        assert!(find_cycles(&edges(&[("a", &[]), ("b", &["a"])])).is_empty());
        assert_eq!(find_cycles(&edges(&[("a", &["a"])])), vec![vec!["a", "a"]]);
    }
}
